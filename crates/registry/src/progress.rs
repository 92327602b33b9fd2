//! Progress: one bar per blob on a terminal (`indicatif`, drawn on stderr), nothing
//! while it runs otherwise (the caller prints one line per image when it is done).

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where a transfer reports its progress.
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Bars when `wanted` says so, else when stderr is a terminal.
    pub fn new(wanted: Option<bool>) -> Progress {
        let on = wanted.unwrap_or_else(|| std::io::stderr().is_terminal());
        Progress {
            multi: on.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// A bar for one blob of `total` bytes (hidden when there are no bars).
    pub fn bar(&self, verb: &str, digest: &str, total: u64) -> ProgressBar {
        let Some(multi) = &self.multi else {
            return ProgressBar::hidden();
        };
        let short: String = digest
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect();
        let bar = multi.add(ProgressBar::new(total));
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} {msg:>10} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(short);
        bar.set_message(verb.to_string());
        bar
    }
}
