//! A container's state directory, `ROOT/<id>/`: `state.json` (what `create` recorded),
//! `cgroup.json` (written as soon as the cgroup exists, so a killed `create` can be cleaned
//! up) and `exec.fifo` while the container is created and not yet started.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use minnow_container::engine::{Placed, Status};
use serde::{Deserialize, Serialize};

/// What `create` saves.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Saved {
    pub id: String,
    pub pid: i32,
    /// The init's start time (/proc/PID/stat field 22): a reused PID is not the container.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    pub cgroup: Placed,
    /// The spec's hooks (poststart runs in `start`, poststop in `delete`).
    #[serde(default)]
    pub hooks: Option<oci_spec::runtime::Hooks>,
}

/// A container id as runc accepts it.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c))
        && id != "."
        && id != "..";
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid container id {id:?}; use letters, digits, '_', '+', '-' and '.'"
        ))
    }
}

pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, String> {
    let text = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("corrupt {}: {e}", path.display()))
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    fs::write(&tmp, text)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The saved state of container `id`.
pub fn load(root: &Path, id: &str) -> Result<Saved, String> {
    check_id(id)?;
    let d = dir(root, id);
    if !d.join("state.json").exists() {
        return Err(format!(
            "container {id} does not exist; see minnow-runc list"
        ));
    }
    read_json(&d.join("state.json"))
}

/// The cgroup a (possibly half-made) container recorded.
pub fn load_cgroup(dir: &Path) -> Option<Placed> {
    read_json(&dir.join("cgroup.json")).ok()
}

/// (state letter, start time) of a process, from /proc/PID/stat.
fn stat(pid: i32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// The start time of a live process.
pub fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|(_, t)| t)
}

impl Saved {
    /// Whether the init still runs (not a zombie, not a reused PID).
    pub fn alive(&self) -> bool {
        matches!(stat(self.pid), Some((s, t)) if t == self.start_time && s != 'Z' && s != 'X')
    }

    /// Created, running, paused or stopped.
    pub fn status(&self, root: &Path) -> Status {
        if !self.alive() {
            Status::Stopped
        } else if dir(root, &self.id)
            .join(minnow_container::engine::EXEC_FIFO)
            .exists()
        {
            Status::Created
        } else if minnow_container::engine::cgroup::frozen(&self.cgroup) {
            Status::Paused
        } else {
            Status::Running
        }
    }

    /// The state JSON of the runtime spec, with runc's extra fields.
    pub fn oci(&self, root: &Path) -> serde_json::Value {
        self.oci_as(self.status(root))
    }

    /// The state JSON with `status` (hooks see "creating" during create).
    pub fn oci_as(&self, status: Status) -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "id": self.id,
            "pid": if status == Status::Stopped { 0 } else { self.pid },
            "status": status,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "annotations": self.annotations,
            "owner": "",
        })
    }
}

/// Every container under `root`, by id.
pub fn all(root: &Path) -> Vec<Saved> {
    let mut out: Vec<Saved> = fs::read_dir(root)
        .map(|d| {
            d.flatten()
                .filter_map(|e| read_json(&e.path().join("state.json")).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a: &Saved, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
    out
}

/// Removes a container's cgroup and state directory.
pub fn destroy(dir: &Path) {
    if let Some(cg) = load_cgroup(dir) {
        minnow_container::engine::cgroup::remove(&cg);
    }
    let _ = fs::remove_dir_all(dir);
}
