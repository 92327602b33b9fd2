//! docker_spec() and the flag helpers against the config.json files Docker 20.10 wrote on
//! the build machine for the same flags (testdata/docker/, from the research).

use serde_json::{json, Value};

use super::*;

fn saved(name: &str) -> Value {
    let text = match name {
        "17" => include_str!("../../testdata/docker/17-default.json"),
        "21" => include_str!("../../testdata/docker/21-readonly.json"),
        "22" => include_str!("../../testdata/docker/22-user.json"),
        "23" => include_str!("../../testdata/docker/23-capdrop.json"),
        "24" => include_str!("../../testdata/docker/24-capadd.json"),
        "25" => include_str!("../../testdata/docker/25-nnp.json"),
        "26" => include_str!("../../testdata/docker/26-privileged.json"),
        "27" => include_str!("../../testdata/docker/27-seccomp-file.json"),
        "28" => include_str!("../../testdata/docker/28-seccomp-unconfined.json"),
        _ => unreachable!(),
    };
    serde_json::from_str(text).unwrap()
}

fn remove(v: &mut Value, path: &[&str]) {
    let (last, parents) = path.split_last().unwrap();
    let mut cur = v;
    for p in parents {
        match cur.get_mut(*p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(o) = cur.as_object_mut() {
        o.remove(*last);
    }
}

fn sort_strings(v: &mut Value) {
    if let Some(a) = v.as_array_mut() {
        a.sort_by_key(|x| x.to_string());
    }
}

/// What Docker's config and minnow's spec must agree on: Docker's own business (hooks,
/// cgroupsPath, root path, hostname and HOSTNAME, its /etc binds, zero-valued resources,
/// the command, the host's device nodes) removed; capability sets and seccomp rules
/// compared as sets (Docker writes lists, oci-spec keeps sets).
fn normalize(mut v: Value) -> Value {
    for p in [
        &["hooks"][..],
        &["hostname"],
        &["root", "path"],
        &["process", "args"],
        &["linux", "cgroupsPath"],
        &["linux", "resources", "memory"],
        &["linux", "resources", "cpu"],
        &["linux", "resources", "blockIO"],
        &["linux", "resources", "pids"],
        &["linux", "devices"],
    ] {
        remove(&mut v, p);
    }
    if let Some(env) = v["process"]["env"].as_array_mut() {
        env.retain(|e| !e.as_str().unwrap_or("").starts_with("HOSTNAME="));
    }
    if let Some(m) = v["mounts"].as_array_mut() {
        m.retain(|m| m["type"] != "bind");
    }
    if let Some(c) = v["process"]["capabilities"].as_object_mut() {
        c.values_mut().for_each(sort_strings);
    }
    if let Some(rules) = v["linux"]["seccomp"]["syscalls"].as_array_mut() {
        for r in rules.iter_mut() {
            sort_strings(&mut r["names"]);
        }
        rules.sort_by_key(|r| r.to_string());
    }
    v
}

fn ours(spec: &Spec) -> Value {
    serde_json::to_value(spec).unwrap()
}

fn assert_agree(spec: &Spec, docker: &str) {
    let a = normalize(ours(spec));
    let b = normalize(saved(docker));
    if a != b {
        // Say which top-level part differs, not two 9 KB blobs.
        for k in ["ociVersion", "process", "root", "mounts", "linux"] {
            assert_eq!(
                a.get(k),
                b.get(k),
                "{k} differs from Docker's config {docker}"
            );
        }
        assert_eq!(a, b, "config {docker}");
    }
}

#[test]
fn docker_spec_agrees_with_a_default_docker_run_field_by_field() {
    let spec = docker_spec();
    let v = ours(&spec);
    let d = saved("17");
    assert_eq!(v["ociVersion"], d["ociVersion"]);
    assert_eq!(v["process"]["user"], d["process"]["user"]);
    assert_eq!(v["process"]["cwd"], d["process"]["cwd"]);
    assert_eq!(v["process"]["oomScoreAdj"], d["process"]["oomScoreAdj"]);
    assert_eq!(
        v["process"]["env"],
        json!([d["process"]["env"][0]]),
        "PATH, not HOSTNAME"
    );
    for absent in ["noNewPrivileges", "rlimits", "terminal", "consoleSize"] {
        assert!(
            v["process"].get(absent).is_none() && d["process"].get(absent).is_none(),
            "{absent}"
        );
    }
    assert_eq!(v["root"], json!({"path": "rootfs"}));
    assert_eq!(
        v["mounts"],
        json!(d["mounts"].as_array().unwrap()[..7]),
        "mounts, binds left out"
    );
    assert_eq!(v["linux"]["sysctl"], d["linux"]["sysctl"]);
    assert_eq!(
        v["linux"]["resources"],
        json!({"devices": d["linux"]["resources"]["devices"]})
    );
    assert_eq!(v["linux"]["namespaces"], d["linux"]["namespaces"]);
    assert_eq!(v["linux"]["maskedPaths"], d["linux"]["maskedPaths"]);
    assert_eq!(v["linux"]["readonlyPaths"], d["linux"]["readonlyPaths"]);
    assert!(v.get("hooks").is_none() && v.get("hostname").is_none());
    assert!(v["linux"].get("cgroupsPath").is_none());
    // Nothing Docker does not write.
    for (k, _) in v.as_object().unwrap() {
        assert!(d.get(k).is_some(), "top-level {k}");
    }
    for (k, _) in v["linux"].as_object().unwrap() {
        assert!(d["linux"].get(k).is_some(), "linux.{k}");
    }
    for (k, _) in v["process"].as_object().unwrap() {
        assert!(d["process"].get(k).is_some(), "process.{k}");
    }
    // Capabilities and the seccomp rules, as sets.
    assert_agree(&spec, "17");
    // And it round-trips through config.json.
    let back: Spec = serde_json::from_value(v).unwrap();
    assert_eq!(back, spec);
}

#[test]
fn read_only_matches_docker() {
    let mut spec = docker_spec();
    read_only(&mut spec);
    assert_agree(&spec, "21");
    // Docker's /etc binds (added by the caller) become read-only too, as in config 21.
    let d = saved("21");
    let binds: Vec<Mount> =
        serde_json::from_value(json!(d["mounts"].as_array().unwrap()[7..])).unwrap();
    let mut spec = docker_spec();
    let mut mounts = spec.mounts().clone().unwrap();
    for b in &binds {
        let mut b = b.clone();
        b.set_options(Some(vec!["rbind".into(), "rprivate".into()]));
        mounts.push(b);
    }
    spec.set_mounts(Some(mounts));
    read_only(&mut spec);
    assert_eq!(ours(&spec)["mounts"], d["mounts"]);
}

#[test]
fn user_matches_docker() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nu1000:x:1000:1000::/tmp:/bin/sh\n",
    )
    .unwrap();
    for arg in ["1000", "u1000", "1000:1000"] {
        let mut spec = docker_spec();
        user(&mut spec, arg, Some(dir.path())).unwrap();
        assert_agree(&spec, "22");
    }
    let mut spec = docker_spec();
    user(&mut spec, "1000", None).unwrap();
    assert_eq!(
        ours(&spec)["process"]["user"],
        json!({"uid": 1000, "gid": 0, "additionalGids": [0]})
    );
    user(&mut spec, "0:0", None).unwrap();
    let e = user(&mut spec, "nobody", Some(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"nobody\"") && !e.contains('\n'), "{e}");
    assert!(user(&mut spec, "1000:", None).is_err());
    assert!(user(&mut spec, "x", None).is_err());
}

#[test]
fn cap_drop_and_add_match_docker() {
    let mut spec = docker_spec();
    cap_add_drop(&mut spec, &[], &["ALL"]).unwrap();
    assert_agree(&spec, "23");
    assert_eq!(ours(&spec)["process"]["capabilities"], json!({}));

    let mut spec = docker_spec();
    cap_add_drop(&mut spec, &["SYS_ADMIN", "cap_net_admin"], &[]).unwrap();
    assert_agree(&spec, "24");
    let c = spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    assert_eq!(caps::mask(c.effective().as_ref().unwrap()), 0xa82435fb);

    // Plain drops and adds: the default minus and plus.
    let mut spec = docker_spec();
    cap_add_drop(&mut spec, &["NET_ADMIN"], &["CAP_CHOWN", "mknod"]).unwrap();
    let c = spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    let b = c.bounding().as_ref().unwrap();
    assert!(
        b.contains(&Capability::NetAdmin)
            && !b.contains(&Capability::Chown)
            && !b.contains(&Capability::Mknod)
    );
    assert_eq!(b.len(), 13);
    // --cap-drop ALL --cap-add NET_ADMIN: only NET_ADMIN (CapEff 1000).
    let mut spec = docker_spec();
    cap_add_drop(&mut spec, &["NET_ADMIN"], &["ALL"]).unwrap();
    let c = spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    assert_eq!(caps::mask(c.effective().as_ref().unwrap()), 0x1000);
    // --cap-add ALL: the host's bounding set.
    let mut spec = docker_spec();
    cap_add_drop(&mut spec, &["ALL"], &["SYS_ADMIN"]).unwrap();
    let c = spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    let host = caps::host_bounding().unwrap();
    assert_eq!(c.bounding().as_ref().unwrap().len(), host.len() - 1);
    let e = cap_add_drop(&mut spec, &["CAP_FLY"], &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"CAP_FLY\""), "{e}");
    // A non-root user keeps only the bounding set (Docker's SetCapabilities).
    let mut spec = docker_spec();
    user(&mut spec, "1000", None).unwrap();
    cap_add_drop(&mut spec, &["NET_ADMIN"], &[]).unwrap();
    let c = spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    assert!(c.effective().is_none() && c.permitted().is_none() && c.bounding().is_some());
}

#[test]
fn no_new_privileges_matches_docker() {
    let mut spec = docker_spec();
    no_new_privileges(&mut spec);
    assert_agree(&spec, "25");
}

#[test]
fn privileged_matches_docker_but_asks_for_the_hosts_caps() {
    let d = saved("26");
    let docker38: Vec<Capability> =
        serde_json::from_value(d["process"]["capabilities"]["bounding"].clone()).unwrap();
    assert_eq!(docker38.len(), 38);
    let mut spec = docker_spec();
    privileged_with(&mut spec, &docker38, Vec::new());
    assert_agree(&spec, "26");
    // The real one: the host's bounding set and its devices.
    let mut spec = docker_spec();
    privileged(&mut spec);
    let c = spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    let host = caps::host_bounding().unwrap();
    assert_eq!(c.bounding().as_ref().unwrap().len(), host.len());
    assert_eq!(c.effective(), c.bounding());
    let devices = spec
        .linux()
        .as_ref()
        .unwrap()
        .devices()
        .clone()
        .unwrap_or_default();
    let null = devices
        .iter()
        .find(|d| d.path() == Path::new("/dev/null"))
        .expect("/dev/null");
    assert_eq!(
        (null.typ(), null.major(), null.minor()),
        (LinuxDeviceType::C, 1, 3)
    );
    assert!(!devices
        .iter()
        .any(|d| d.path().starts_with("/dev/pts") || d.path() == Path::new("/dev/console")));
}

#[test]
fn host_devices_list_like_runc() {
    // Docker's list on the build machine: every entry still present with the same
    // numbers is listed the same way (devices come and go between machines).
    let d = saved("26");
    let theirs: Vec<LinuxDevice> = serde_json::from_value(d["linux"]["devices"].clone()).unwrap();
    let ours = host_devices(Path::new("/dev")).unwrap();
    assert!(!ours.is_empty());
    let mut compared = 0;
    for t in &theirs {
        let Ok(meta) = std::fs::symlink_metadata(t.path()) else {
            continue;
        };
        if nix::sys::stat::major(meta.rdev()) as i64 != t.major()
            || nix::sys::stat::minor(meta.rdev()) as i64 != t.minor()
        {
            continue;
        }
        let o = ours
            .iter()
            .find(|o| o.path() == t.path())
            .unwrap_or_else(|| panic!("{:?} missing", t.path()));
        assert_eq!(o, t);
        compared += 1;
    }
    assert!(compared > 0, "no device of Docker's list on this host");
    let mut sorted = ours.clone();
    sorted.sort_by(|a, b| a.path().cmp(b.path()));
    assert_eq!(sorted, ours);
}

#[test]
fn seccomp_options_match_docker() {
    let mut spec = docker_spec();
    seccomp_opt(&mut spec, "unconfined").unwrap();
    assert_agree(&spec, "28");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        include_str!("../../testdata/docker/seccomp-deny-mkdir.profile.json"),
    )
    .unwrap();
    let mut spec = docker_spec();
    seccomp_opt(&mut spec, file.path().to_str().unwrap()).unwrap();
    assert_agree(&spec, "27");
    let e = seccomp_opt(&mut spec, "/nonexistent/profile.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/nonexistent/profile.json") && !e.contains('\n'),
        "{e}"
    );
    std::fs::write(file.path(), "{not json").unwrap();
    assert!(seccomp_opt(&mut spec, file.path().to_str().unwrap()).is_err());
}

#[test]
fn apply_flags_in_dockers_order() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        include_str!("../../testdata/docker/seccomp-deny-mkdir.profile.json"),
    )
    .unwrap();
    let cases: Vec<(Flags, &str)> = vec![
        (Flags::default(), "17"),
        (
            Flags {
                read_only: true,
                ..Default::default()
            },
            "21",
        ),
        (
            Flags {
                user: Some("1000:1000".into()),
                ..Default::default()
            },
            "22",
        ),
        (
            Flags {
                cap_drop: vec!["ALL".into()],
                ..Default::default()
            },
            "23",
        ),
        (
            Flags {
                cap_add: vec!["SYS_ADMIN".into(), "NET_ADMIN".into()],
                ..Default::default()
            },
            "24",
        ),
        (
            Flags {
                security_opt: vec!["no-new-privileges".into()],
                ..Default::default()
            },
            "25",
        ),
        (
            Flags {
                security_opt: vec![format!("seccomp={}", file.path().display())],
                ..Default::default()
            },
            "27",
        ),
        (
            Flags {
                security_opt: vec!["seccomp=unconfined".into()],
                ..Default::default()
            },
            "28",
        ),
    ];
    for (flags, docker) in cases {
        let mut spec = docker_spec();
        apply_flags(&mut spec, &flags, None).unwrap();
        assert_agree(&spec, docker);
    }
    // --privileged wins over a seccomp profile, as in Docker.
    let mut spec = docker_spec();
    let flags = Flags {
        privileged: true,
        security_opt: vec![format!("seccomp={}", file.path().display())],
        ..Default::default()
    };
    apply_flags(&mut spec, &flags, None).unwrap();
    assert!(spec.linux().as_ref().unwrap().seccomp().is_none());
    let e = apply_flags(
        &mut docker_spec(),
        &Flags {
            security_opt: vec!["apparmor=x".into()],
            ..Default::default()
        },
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("apparmor=x"), "{e}");
}

#[test]
fn errors_and_filters_cross_threads() {
    // The engine boxes these as `dyn Error + Send + Sync` and compiles the filter in the
    // runtime before it forks the init.
    fn send_sync<T: std::error::Error + Send + Sync + 'static>() {}
    send_sync::<Error>();
    send_sync::<caps::Error>();
    send_sync::<seccomp::Error>();
    fn send<T: Send + 'static>() {}
    send::<seccomp::Filter>();
}
