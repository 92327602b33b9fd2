//! The security settings of `minnow container run`'s workload: Docker's defaults
//! ([`defaults::docker_spec`]) changed by Docker's flags ([`defaults::apply_flags`]),
//! turned by the supervisor, before the clone, into what the container's init applies:
//! the five capability sets, a seccomp filter compiled to BPF (a bad profile fails before
//! anything exists), the user, no_new_privs, masked and read-only paths, a read-only root.
//!
//! In the init, [`Security::apply`] follows the order of `caps.rs`'s module
//! documentation (runc's): seccomp first unless no_new_privs, keepcaps, setgroups /
//! setresgid / setresuid, `caps::apply`, then no_new_privs and seccomp if asked, exec.
//! The path mounts are `paths.rs`'s, called by the engine's init after pivot_root.

use std::path::{Path, PathBuf};

use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::{LinuxCapabilities, Spec};

use crate::defaults::{self, Flags};
use crate::error::{step as fail, Failure};
use crate::{caps, seccomp, Error};

/// Masked beyond Docker 20.10's list (`defaults::MASKED_PATHS`): newer moby masks the
/// powercap tree too (RAPL energy counters, a side channel: CVE-2020-8694).
pub const EXTRA_MASKED_PATHS: [&str; 1] = ["/sys/devices/virtual/powercap"];

/// What the container's init applies (built by the supervisor).
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// `--privileged`: /dev and the root allow any device node, as before issue 12.
    pub privileged: bool,
    pub capabilities: LinuxCapabilities,
    pub filter: Option<seccomp::Filter>,
    pub no_new_privileges: bool,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<Gid>,
    /// Bound over with /dev/null (files) or a read-only empty tmpfs (directories).
    pub masked_paths: Vec<PathBuf>,
    /// Bound onto themselves, read-only.
    pub readonly_paths: Vec<PathBuf>,
    pub readonly_root: bool,
}

/// The error for a flag the helpers refused, naming the flag.
fn flag_error(e: defaults::Error, flags: &Flags) -> Error {
    let seccomp_file = flags.security_opt.iter().find_map(|o| {
        o.strip_prefix("seccomp=")
            .or_else(|| o.strip_prefix("seccomp:"))
    });
    match (&e, seccomp_file) {
        (defaults::Error::Caps(caps::Error::Name { name }), _) => {
            let flag = if flags.cap_add.contains(name) {
                "--cap-add"
            } else {
                "--cap-drop"
            };
            Error::Flag {
                flag: format!("{flag} {name:?}"),
                source: Box::new(e.into()),
            }
        }
        (defaults::Error::Seccomp(_), Some(file)) => Error::Flag {
            flag: format!("--security-opt seccomp={file}"),
            source: Box::new(e.into()),
        },
        _ => e.into(),
    }
}

/// Checks the flags before the image is resolved or pulled (a user name is checked later,
/// against the image's /etc/passwd); compiles nothing.
pub fn check_flags(flags: &Flags) -> Result<(), Error> {
    let mut early = flags.clone();
    let numeric = |u: &str| {
        u.split(':')
            .next()
            .is_some_and(|u| u.parse::<u32>().is_ok())
    };
    if early.user.as_deref().is_some_and(|u| !numeric(u)) {
        early.user = None;
    }
    let mut spec = defaults::docker_spec();
    defaults::apply_flags(&mut spec, &early, None).map_err(|e| flag_error(e, flags))
}

/// Docker's defaults ([`defaults::docker_spec`]) changed by `flags`; `passwd_root` is
/// where the image's `etc/passwd` is, for `--user NAME`. An error names the flag.
pub fn flags_spec(flags: &Flags, passwd_root: Option<&Path>) -> Result<Spec, Error> {
    let mut spec = defaults::docker_spec();
    defaults::apply_flags(&mut spec, flags, passwd_root).map_err(|e| flag_error(e, flags))?;
    Ok(spec)
}

impl Security {
    /// Docker's defaults changed by `flags`; `passwd_root` is where the image's
    /// `etc/passwd` is, for `--user NAME`.
    pub fn from_flags(flags: &Flags, passwd_root: Option<&Path>) -> Result<Security, Error> {
        Security::from_flags_spec(&flags_spec(flags, passwd_root)?, flags)
    }

    /// The settings of [`flags_spec`]'s spec (an error naming the flag).
    pub fn from_flags_spec(spec: &Spec, flags: &Flags) -> Result<Security, Error> {
        Security::from_spec(spec, flags.privileged).map_err(|e| {
            match flags
                .security_opt
                .iter()
                .find_map(|o| o.strip_prefix("seccomp="))
            {
                Some(file) if !flags.privileged => Error::Flag {
                    flag: format!("--security-opt seccomp={file}"),
                    source: Box::new(e),
                },
                _ => e,
            }
        })
    }

    /// The settings of an OCI spec (its seccomp compiled here, in the caller).
    pub fn from_spec(spec: &Spec, privileged: bool) -> Result<Security, Error> {
        let process = spec.process().as_ref();
        let user = process.map(|p| p.user().clone()).unwrap_or_default();
        let linux = spec.linux().as_ref();
        let filter = linux
            .and_then(|l| l.seccomp().as_ref())
            .map(seccomp::compile)
            .transpose()?;
        if let Some(f) = &filter {
            if !f.skipped().is_empty() {
                log::debug!("seccomp: syscalls unknown to libseccomp: {:?}", f.skipped());
            }
        }
        let mut masked_paths: Vec<PathBuf> = linux
            .and_then(|l| l.masked_paths().clone())
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect();
        if linux.is_some_and(|l| l.masked_paths().is_some()) {
            for p in EXTRA_MASKED_PATHS {
                if !masked_paths.iter().any(|m| m == Path::new(p)) {
                    masked_paths.push(p.into());
                }
            }
        }
        Ok(Security {
            privileged,
            capabilities: process
                .and_then(|p| p.capabilities().clone())
                .unwrap_or_default(),
            filter,
            no_new_privileges: process.and_then(|p| p.no_new_privileges()).unwrap_or(false),
            uid: user.uid(),
            gid: user.gid(),
            groups: user
                .additional_gids()
                .iter()
                .flatten()
                .map(|g| Gid::from_raw(*g))
                .collect(),
            masked_paths,
            readonly_paths: linux
                .and_then(|l| l.readonly_paths().clone())
                .unwrap_or_default()
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            readonly_root: spec
                .root()
                .as_ref()
                .and_then(|r| r.readonly())
                .unwrap_or(false),
        })
    }

    /// In the container's init, after set-up, right before exec (see the module
    /// documentation for the order).
    pub fn apply(&self) -> Result<(), Failure> {
        if !self.no_new_privileges {
            if let Some(f) = &self.filter {
                f.load().map_err(fail("cannot load the seccomp filter"))?;
            }
        }
        if self.uid != 0 {
            caps::keep_caps_for_setuid().map_err(fail("cannot keep capabilities"))?;
        }
        setgroups(&self.groups).map_err(fail("cannot set the supplementary groups"))?;
        let (u, g) = (Uid::from_raw(self.uid), Gid::from_raw(self.gid));
        setresgid(g, g, g).map_err(fail("cannot switch group"))?;
        setresuid(u, u, u).map_err(fail("cannot switch user"))?;
        caps::apply(&self.capabilities).map_err(fail("cannot set capabilities"))?;
        if self.no_new_privileges {
            nix::sys::prctl::set_no_new_privs().map_err(fail("cannot set no_new_privs"))?;
            if let Some(f) = &self.filter {
                f.load().map_err(fail("cannot load the seccomp filter"))?;
            }
        }
        Ok(())
    }
}

/// The directory holding the image's `etc/passwd` as the container sees it: the top-most
/// layer (`lowers` is bottom first) that has one.
pub fn passwd_root(lowers: &[PathBuf]) -> Option<PathBuf> {
    lowers
        .iter()
        .rev()
        .find(|l| l.join("etc/passwd").is_file())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Flags {
        Flags::default()
    }

    #[test]
    fn default_is_dockers() {
        let s = Security::from_flags(&flags(), None).unwrap();
        assert!(!s.privileged && !s.no_new_privileges && !s.readonly_root);
        assert!(s.filter.is_some());
        assert_eq!(
            caps::mask(s.capabilities.effective().as_ref().unwrap()),
            0xa80425fb
        );
        assert_eq!(
            (s.uid, s.gid, s.groups.clone()),
            (0, 0, vec![Gid::from_raw(0)])
        );
        let masked: Vec<&str> = s.masked_paths.iter().filter_map(|p| p.to_str()).collect();
        for p in defaults::MASKED_PATHS.iter().chain(&EXTRA_MASKED_PATHS) {
            assert!(masked.contains(p), "{p} not masked: {masked:?}");
        }
        let ro: Vec<&str> = s.readonly_paths.iter().filter_map(|p| p.to_str()).collect();
        assert_eq!(ro, defaults::READONLY_PATHS);
    }

    #[test]
    fn privileged_lifts_everything() {
        let f = Flags {
            privileged: true,
            security_opt: vec!["seccomp=/nonexistent".into()],
            ..flags()
        };
        let s = Security::from_flags(&f, None).unwrap();
        assert!(s.privileged && s.filter.is_none());
        assert!(s.masked_paths.is_empty() && s.readonly_paths.is_empty());
    }

    #[test]
    fn flags_change_the_settings() {
        let f = Flags {
            cap_drop: vec!["ALL".into()],
            security_opt: vec!["seccomp=unconfined".into(), "no-new-privileges".into()],
            read_only: true,
            user: Some("1000:50".into()),
            ..flags()
        };
        let s = Security::from_flags(&f, None).unwrap();
        assert!(s.filter.is_none() && s.no_new_privileges && s.readonly_root);
        assert_eq!((s.uid, s.gid), (1000, 50));
        let c = &s.capabilities;
        assert!(c.bounding().is_none() && c.effective().is_none() && c.permitted().is_none());
    }

    #[test]
    fn bad_flags_are_one_line_naming_the_flag() {
        let cases = [
            (
                Flags {
                    cap_add: vec!["FLY".into()],
                    ..flags()
                },
                "--cap-add \"FLY\"",
            ),
            (
                Flags {
                    cap_drop: vec!["SWIM".into()],
                    ..flags()
                },
                "--cap-drop \"SWIM\"",
            ),
            (
                Flags {
                    security_opt: vec!["apparmor=x".into()],
                    ..flags()
                },
                "unknown option",
            ),
            (
                Flags {
                    security_opt: vec!["seccomp=/nonexistent/p.json".into()],
                    ..flags()
                },
                "seccomp=/nonexistent/p.json",
            ),
            (
                Flags {
                    user: Some("1000:".into()),
                    ..flags()
                },
                "--user",
            ),
        ];
        for (f, want) in cases {
            let e = check_flags(&f).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains(';') && !e.contains('\n'),
                "{e}"
            );
            assert_eq!(Security::from_flags(&f, None).unwrap_err().to_string(), e);
        }
        // A name is resolved later, against the image.
        let named = Flags {
            user: Some("nobody".into()),
            ..flags()
        };
        assert!(check_flags(&named).is_ok());
    }

    #[test]
    fn a_bad_profile_fails_before_the_clone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.json");
        std::fs::write(&file, "{\"defaultAction\": \"SCMP_ACT_FLY\"}").unwrap();
        let f = Flags {
            security_opt: vec![format!("seccomp={}", file.display())],
            ..flags()
        };
        let e = Security::from_flags(&f, None).unwrap_err().to_string();
        assert!(
            e.starts_with("--security-opt seccomp=") && e.contains("SCMP_ACT_FLY"),
            "{e}"
        );
    }

    #[test]
    fn user_name_from_the_top_layer_with_a_passwd() {
        let dir = tempfile::tempdir().unwrap();
        let (low, top) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(low.join("etc")).unwrap();
        std::fs::create_dir_all(&top).unwrap();
        std::fs::write(low.join("etc/passwd"), "app:x:1234:99::/:/bin/sh\n").unwrap();
        let root = passwd_root(&[low.clone(), top]);
        assert_eq!(root.as_deref(), Some(low.as_path()));
        let f = Flags {
            user: Some("app".into()),
            ..flags()
        };
        let s = Security::from_flags(&f, root.as_deref()).unwrap();
        assert_eq!((s.uid, s.gid), (1234, 99));
        let e = Security::from_flags(
            &Flags {
                user: Some("ghost".into()),
                ..flags()
            },
            root.as_deref(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("ghost") && e.contains("passwd"), "{e}");
    }
}
