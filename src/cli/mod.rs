//! The subcommands other than `run`: each turns its flags into a library call.

pub mod container;
pub mod image;
pub mod jail;
pub mod net;
pub mod registry;
pub mod vm;
