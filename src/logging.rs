//! The log lines every minnow program writes on stderr: `minnow: MESSAGE` for info,
//! `minnow: warning: ...`, `minnow: error: ...` and so on for the other levels.

use std::io::Write;

/// Installs the stderr logger with `filter` (env_logger's syntax, e.g. `warn,minnow=info`).
pub fn init(filter: &str) {
    env_logger::Builder::new()
        .parse_filters(filter)
        .format(|buf, record| match record.level() {
            log::Level::Info => writeln!(buf, "minnow: {}", record.args()),
            log::Level::Warn => writeln!(buf, "minnow: warning: {}", record.args()),
            level => writeln!(
                buf,
                "minnow: {}: {}",
                level.as_str().to_lowercase(),
                record.args()
            ),
        })
        .init();
}
