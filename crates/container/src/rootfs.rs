//! `container run`'s root: the overlayfs options of the image's layers (the engine's
//! init mounts the overlay in the container's mount namespace), and the program lookup
//! on the container's PATH that the engine's init and `exec` use.

use std::path::{Path, PathBuf};

use crate::Error;

/// The overlayfs mount options for `lowers` (bottom layer first), `upper` and `work`.
/// overlayfs lists lower dirs top first, separated by ':'; paths with ':' or ',' would be
/// misparsed, and the whole string must fit in one page.
pub fn overlay_options(lowers: &[PathBuf], upper: &Path, work: &Path) -> Result<String, Error> {
    if lowers.is_empty() {
        return Err(Error::NoLayers);
    }
    let mut check = Vec::new();
    for p in lowers
        .iter()
        .rev()
        .chain([&upper.to_path_buf(), &work.to_path_buf()])
    {
        let s = p.to_str().ok_or_else(|| Error::NotUtf8(p.clone()))?;
        if s.contains([':', ',', '\n']) {
            return Err(Error::OverlayPath(s.to_string()));
        }
        check.push(s.to_string());
    }
    let (work, upper) = (
        check.pop().unwrap_or_default(),
        check.pop().unwrap_or_default(),
    );
    let opts = format!(
        "lowerdir={},upperdir={upper},workdir={work}",
        check.join(":")
    );
    if opts.len() >= 4096 {
        return Err(Error::OverlayTooLong {
            len: opts.len(),
            layers: lowers.len(),
        });
    }
    Ok(opts)
}

/// Finds `cmd` on the container's PATH (not minnow's, which execvp would use).
pub fn find_program(cmd: &str, env: &[String], exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    if cmd.contains('/') {
        return Some(PathBuf::from(cmd));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/bin:/usr/bin:/bin");
    path.split(':')
        .map(|d| Path::new(d).join(cmd))
        .find(|p| exists(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_option_string() {
        let lowers = vec![
            PathBuf::from("/s/layers/a/rootfs"),
            PathBuf::from("/s/layers/b/rootfs"),
        ];
        let o =
            overlay_options(&lowers, Path::new("/s/c/1/upper"), Path::new("/s/c/1/work")).unwrap();
        // Top layer first.
        assert_eq!(o, "lowerdir=/s/layers/b/rootfs:/s/layers/a/rootfs,upperdir=/s/c/1/upper,workdir=/s/c/1/work");
        assert!(overlay_options(&[], Path::new("/u"), Path::new("/w")).is_err());
        let e = overlay_options(&[PathBuf::from("/a:b")], Path::new("/u"), Path::new("/w"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("':'"), "{e}");
        assert!(
            overlay_options(&[PathBuf::from("/a")], Path::new("/u,x"), Path::new("/w")).is_err()
        );
        let many: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("/store/layers/{i:064}/rootfs")))
            .collect();
        assert!(overlay_options(&many, Path::new("/u"), Path::new("/w"))
            .unwrap_err()
            .to_string()
            .contains("4095"));
    }

    #[test]
    fn program_lookup_uses_container_path() {
        let env = vec!["PATH=/sbin:/bin".to_string()];
        let found = find_program("ls", &env, |p| p == Path::new("/bin/ls"));
        assert_eq!(found, Some(PathBuf::from("/bin/ls")));
        assert_eq!(
            find_program("./x", &env, |_| false),
            Some(PathBuf::from("./x"))
        );
        assert_eq!(find_program("nope", &env, |_| false), None);
    }
}
