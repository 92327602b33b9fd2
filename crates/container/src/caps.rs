//! Capabilities of the container's process: the five OCI sets applied with the `caps`
//! crate, Docker's default set, and the names `--cap-add`/`--cap-drop` take.
//!
//! Order in the container's init (runc's `finalizeNamespace`, which drops the bounding
//! set, sets PR_SET_KEEPCAPS, switches user, clears it and sets the other sets):
//!
//! 1. (`seccomp::Filter::load` here when `process.noNewPrivileges` is false: it needs
//!    CAP_SYS_ADMIN, which [`apply`] usually drops.)
//! 2. [`keep_caps_for_setuid`] — without it the kernel empties the permitted set when
//!    every uid goes from 0 to non-zero, and nothing can be raised again;
//! 3. setgroups / setresgid / setresuid (the caller's);
//! 4. [`apply`]: raises the effective set to the permitted one (the uid switch emptied
//!    it; dropping from the bounding set needs CAP_SETPCAP), drops from the bounding set
//!    what is not listed, sets inheritable, effective, permitted, then ambient, and
//!    clears PR_SET_KEEPCAPS;
//! 5. no_new_privs, (`Filter::load` here when noNewPrivileges is true), exec.
//!
//! For root (uid 0 stays 0) steps 2-3 change nothing and [`apply`] alone is enough.

use std::collections::HashSet;

use caps::CapSet;
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

/// Docker 20.10's default capabilities, in Docker's order (`oci/caps/defaults.go`);
/// CapEff `00000000a80425fb`.
pub const DOCKER_DEFAULT: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown capability {name:?}; use a name from capabilities(7) such as CAP_NET_ADMIN or NET_ADMIN, or ALL")]
    Name { name: String },
    #[error("process.capabilities.{field}: {cap} is not known to the caps crate; remove it")]
    Unknown { field: &'static str, cap: String },
    #[error("process.capabilities.{field}: {cap} is not in this process's permitted set (the host does not grant it, or the uid switch dropped it); remove it, or call caps::keep_caps_for_setuid() before switching user")]
    NotHeld { field: &'static str, cap: String },
    #[error("process.capabilities.effective: {cap} is not in permitted; add it to permitted or remove it")]
    EffectiveNotPermitted { cap: String },
    #[error("process.capabilities.ambient: {cap} must also be in permitted and inheritable; add it there or remove it")]
    AmbientNotAllowed { cap: String },
    #[error("process.capabilities.bounding: cannot drop {cap} (dropping needs CAP_SETPCAP in the permitted set); keep CAP_SETPCAP until apply")]
    Bounding {
        cap: String,
        #[source]
        source: caps::errors::CapsError,
    },
    #[error("process.capabilities.{field}: the kernel refused the set; check it against the bounding and permitted sets")]
    Set {
        field: &'static str,
        #[source]
        source: caps::errors::CapsError,
    },
    #[error("capabilities: cannot read this process's {set} set; check /proc and capget(2)")]
    Read {
        set: &'static str,
        #[source]
        source: caps::errors::CapsError,
    },
    #[error("capabilities: prctl({what}) failed; the kernel must support it")]
    Prctl {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
}

/// `CAP_X`, the name OCI configs and Docker use.
pub fn name(cap: Capability) -> String {
    format!("CAP_{cap}")
}

/// A capability name as `--cap-add`/`--cap-drop` take it: with or without `CAP_`, any
/// case (`ALL` is the caller's business).
pub fn parse(name: &str) -> Result<Capability, Error> {
    serde_json::from_value(serde_json::Value::String(name.trim().to_string())).map_err(|_| {
        Error::Name {
            name: name.to_string(),
        }
    })
}

/// The bit mask of a set, as `/proc/self/status` shows it (CapEff etc.).
pub fn mask<'a>(set: impl IntoIterator<Item = &'a Capability>) -> u64 {
    set.into_iter()
        .filter_map(|c| to_sys(*c))
        .fold(0, |m, c| m | c.bitmask())
}

/// Docker's default: the 14 capabilities in bounding, effective and permitted; none
/// inheritable or ambient (as Docker 20.10 writes config.json: those keys are absent).
pub fn docker_default() -> LinuxCapabilities {
    let set: Capabilities = DOCKER_DEFAULT.into_iter().collect();
    let mut c = LinuxCapabilities::default();
    c.set_bounding(Some(set.clone()))
        .set_effective(Some(set.clone()))
        .set_permitted(Some(set))
        .set_inheritable(None)
        .set_ambient(None);
    c
}

/// The capabilities in this process's bounding set (what a privileged container can get:
/// on the build machines every capability but CAP_SYS_RESOURCE).
pub fn host_bounding() -> Result<Vec<Capability>, Error> {
    let set = caps::read(None, CapSet::Bounding).map_err(|source| Error::Read {
        set: "bounding",
        source,
    })?;
    let mut out: Vec<Capability> = set
        .into_iter()
        .filter_map(|c| parse(&c.to_string()).ok())
        .collect();
    out.sort_by_key(|c| to_sys(*c).map(|c| c.index()).unwrap_or(u8::MAX));
    Ok(out)
}

fn to_sys(cap: Capability) -> Option<caps::Capability> {
    name(cap).parse::<caps::Capability>().ok()
}

fn sys_set(field: &'static str, set: &Option<Capabilities>) -> Result<caps::CapsHashSet, Error> {
    set.iter()
        .flatten()
        .map(|c| {
            to_sys(*c).ok_or_else(|| Error::Unknown {
                field,
                cap: name(*c),
            })
        })
        .collect()
}

/// Sets PR_SET_KEEPCAPS, so a switch from uid 0 keeps the permitted set for [`apply`].
pub fn keep_caps_for_setuid() -> Result<(), Error> {
    nix::sys::prctl::set_keepcaps(true).map_err(|source| Error::Prctl {
        what: "PR_SET_KEEPCAPS",
        source,
    })
}

/// Applies the five sets to the calling thread (the container's init is single-threaded);
/// absent sets are empty. See the module documentation for where the caller calls it.
pub fn apply(spec: &LinuxCapabilities) -> Result<(), Error> {
    let bounding = sys_set("bounding", spec.bounding())?;
    let effective = sys_set("effective", spec.effective())?;
    let permitted = sys_set("permitted", spec.permitted())?;
    let inheritable = sys_set("inheritable", spec.inheritable())?;
    let ambient = sys_set("ambient", spec.ambient())?;

    let held = caps::read(None, CapSet::Permitted).map_err(|source| Error::Read {
        set: "permitted",
        source,
    })?;
    if let Some(c) = sorted(&permitted).into_iter().find(|c| !held.contains(c)) {
        return Err(Error::NotHeld {
            field: "permitted",
            cap: c.to_string(),
        });
    }
    if let Some(c) = sorted(&effective)
        .into_iter()
        .find(|c| !permitted.contains(c))
    {
        return Err(Error::EffectiveNotPermitted { cap: c.to_string() });
    }
    if let Some(c) = sorted(&ambient)
        .into_iter()
        .find(|c| !permitted.contains(c) || !inheritable.contains(c))
    {
        return Err(Error::AmbientNotAllowed { cap: c.to_string() });
    }

    // After a uid switch with keepcaps the effective set is empty; CAP_SETPCAP (for the
    // bounding set and inheritable set) is usable again once raised from permitted.
    caps::set(None, CapSet::Effective, &held).map_err(|source| Error::Set {
        field: "effective",
        source,
    })?;
    let current = caps::read(None, CapSet::Bounding).map_err(|source| Error::Read {
        set: "bounding",
        source,
    })?;
    for c in sorted(&current) {
        if !bounding.contains(&c) {
            caps::drop(None, CapSet::Bounding, c).map_err(|source| Error::Bounding {
                cap: c.to_string(),
                source,
            })?;
        }
    }
    caps::set(None, CapSet::Inheritable, &inheritable).map_err(|source| Error::Set {
        field: "inheritable",
        source,
    })?;
    caps::set(None, CapSet::Effective, &effective).map_err(|source| Error::Set {
        field: "effective",
        source,
    })?;
    caps::set(None, CapSet::Permitted, &permitted).map_err(|source| Error::Set {
        field: "permitted",
        source,
    })?;
    caps::clear(None, CapSet::Ambient).map_err(|source| Error::Set {
        field: "ambient",
        source,
    })?;
    for c in sorted(&ambient) {
        caps::raise(None, CapSet::Ambient, c).map_err(|source| Error::Set {
            field: "ambient",
            source,
        })?;
    }
    nix::sys::prctl::set_keepcaps(false).map_err(|source| Error::Prctl {
        what: "PR_SET_KEEPCAPS",
        source,
    })
}

/// A set in capability-number order, so errors and actions are deterministic.
fn sorted(set: &HashSet<caps::Capability>) -> Vec<caps::Capability> {
    let mut v: Vec<_> = set.iter().copied().collect();
    v.sort_by_key(|c| c.index());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_oci_capability_has_its_kernel_name() {
        // The names Display gives must be the serde names (what config.json holds).
        for c in caps::all() {
            let oci = parse(&c.to_string()).expect("caps crate name parses");
            assert_eq!(name(oci), c.to_string());
            assert_eq!(
                serde_json::to_value(oci).unwrap(),
                serde_json::Value::String(c.to_string())
            );
            assert_eq!(to_sys(oci).unwrap(), c);
        }
    }

    #[test]
    fn names_with_or_without_prefix_any_case() {
        assert_eq!(parse("NET_ADMIN").unwrap(), Capability::NetAdmin);
        assert_eq!(parse("cap_net_admin").unwrap(), Capability::NetAdmin);
        assert_eq!(parse("CAP_SYS_ADMIN").unwrap(), Capability::SysAdmin);
        let e = parse("CAP_FLY").unwrap_err().to_string();
        assert!(e.contains("\"CAP_FLY\"") && !e.contains('\n'), "{e}");
        assert!(parse("ALL").is_err(), "ALL is the flag helpers' business");
    }

    #[test]
    fn docker_default_sets_and_mask() {
        let c = docker_default();
        for set in [c.bounding(), c.effective(), c.permitted()] {
            let set = set.as_ref().expect("set present");
            assert_eq!(set.len(), 14);
            assert_eq!(mask(set), 0xa80425fb);
        }
        assert!(c.inheritable().is_none() && c.ambient().is_none());
        let json = serde_json::to_value(&c).unwrap();
        assert!(json.get("inheritable").is_none() && json.get("ambient").is_none());
    }

    #[test]
    fn docker_default_equals_the_saved_config() {
        let saved: serde_json::Value =
            serde_json::from_str(include_str!("../testdata/docker/17-default.json")).unwrap();
        let caps = &saved["process"]["capabilities"];
        let ours = docker_default();
        for (key, set) in [
            ("bounding", ours.bounding()),
            ("effective", ours.effective()),
            ("permitted", ours.permitted()),
        ] {
            let theirs: Vec<String> = serde_json::from_value(caps[key].clone()).unwrap();
            // Same order too, for the Vec Docker writes.
            let ordered: Vec<String> = DOCKER_DEFAULT.iter().map(|c| name(*c)).collect();
            assert_eq!(theirs, ordered, "{key}");
            let set: HashSet<String> = set.as_ref().unwrap().iter().map(|c| name(*c)).collect();
            assert_eq!(set, theirs.into_iter().collect::<HashSet<_>>(), "{key}");
        }
        assert!(caps.get("inheritable").is_none() && caps.get("ambient").is_none());
    }

    #[test]
    fn mask_matches_kernel_numbers() {
        assert_eq!(mask(&[Capability::Chown]), 1);
        assert_eq!(mask(&[Capability::SysAdmin]), 1 << 21);
        assert_eq!(
            mask(&[Capability::NetAdmin, Capability::SysAdmin]) | 0xa80425fb,
            0xa82435fb
        );
        assert_eq!(mask(&[Capability::CheckpointRestore]), 1 << 40);
    }
}
