//! The JSON VM config (`minnow run --config FILE`): parsed and validated as minnow does,
//! and for a valid one, everything derived from it before a VM is built (root device,
//! memory size, MACs, `ip=` arguments, the kernel command line).
//!
//! Input: the file's bytes.
//! Oracle: no panic; a valid config survives a round trip through JSON unchanged.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use minnow_vmm::boot::cmdline::{self, Parts, Workload};
use minnow_vmm::config::VmConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("vm.json");
    let Ok(config) = VmConfig::from_json(text, path) else {
        return;
    };
    if config.validate().is_err() {
        return;
    }
    let root = config.root_device();
    let _ = config.mem_bytes();
    let mut devices = Vec::new();
    for (i, net) in config.nets.iter().enumerate() {
        let _ = net.mac().to_string();
        devices.extend(net.kernel_ip_arg(i));
    }
    let workload = Workload {
        init: None,
        quiet: true,
        argv: config.command.clone(),
        raw: true,
    };
    if cmdline::check_command(&config.command).is_ok() {
        let parts = Parts {
            devices: &devices,
            root: root.as_deref().map(|r| (r, false)),
            workload: &workload,
            user: config.cmdline.as_deref(),
        };
        let _ = cmdline::compose(&parts);
    }
    let again = serde_json::to_string(&config).unwrap();
    let back = VmConfig::from_json(&again, path).unwrap();
    assert_eq!(back, config, "round trip through {again}");
});
