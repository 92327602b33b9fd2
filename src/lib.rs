//! minnow: a small KVM microVM monitor.
//!
//! Data flows one way: [`config::VmConfig`] (validated flags or JSON) goes to
//! [`vmm::Vmm::build`], which creates the VM (memory, kernel, devices, vCPUs), and
//! [`vmm::Vmm::run`] runs it until the guest stops. See docs/design.md.

pub mod arch;
pub mod bench;
pub mod boot;
pub mod config;
pub mod container;
pub mod devices;
pub mod hostnet;
pub mod image;
pub mod vmm;
