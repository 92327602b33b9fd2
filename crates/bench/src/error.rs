//! The bench's errors: a set-up step that could not be done (the bench then stops with
//! one line `minnow-bench: error: <what>; <fix>`). A measurement that ran badly is not
//! an error: it is a row's status in the report.

use std::path::PathBuf;

/// Everything that stops a benchmark before or outside its measurements.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create {path}: {source}; choose another --out DIR")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}; check that the directory is writable")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}; {fix}")]
    Read {
        path: PathBuf,
        fix: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot copy {from} to {to}: {source}; {fix}")]
    Copy {
        from: PathBuf,
        to: PathBuf,
        fix: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {program}: {source}; is it installed?")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed ({status}): {output}")]
    Command {
        what: String,
        status: String,
        output: String,
    },
    #[error("{path} is not a valid {what}: {source}; remove it and rerun")]
    Json {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot mount {fstype} on {path}: {source}")]
    Mount {
        fstype: &'static str,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot plot {path}: {source}")]
    Plot {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{what} not found; run minnow-bench from the minnow repository's top directory")]
    NotInRepo { what: &'static str },
    #[error("{what}; {fix}")]
    Missing { what: String, fix: String },
    #[error(transparent)]
    Image(#[from] minnow_image::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn write(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Write { path, source }
    }

    pub fn create_dir(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::CreateDir { path, source }
    }

    pub fn read(
        path: impl Into<PathBuf>,
        fix: &'static str,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Read { path, fix, source }
    }

    pub fn spawn(program: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let program = program.into();
        move |source| Error::Spawn { program, source }
    }

    pub fn missing(what: impl Into<String>, fix: impl Into<String>) -> Error {
        Error::Missing {
            what: what.into(),
            fix: fix.into(),
        }
    }
}

/// Copies a file, with an error that names both ends.
pub fn copy(from: impl Into<PathBuf>, to: impl Into<PathBuf>, fix: &'static str) -> Result<()> {
    let (from, to) = (from.into(), to.into());
    std::fs::copy(&from, &to)
        .map(drop)
        .map_err(|source| Error::Copy {
            from,
            to,
            fix,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_with_a_fix() {
        let e = Error::create_dir("/x")(std::io::Error::from_raw_os_error(13));
        let s = e.to_string();
        assert!(s.starts_with("cannot create /x: "), "{s}");
        assert!(s.ends_with("; choose another --out DIR"), "{s}");
        assert!(!s.contains('\n'));
        assert!(std::error::Error::source(&e).is_some());
    }
}
