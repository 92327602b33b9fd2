//! Architecture-specific VM setup. Only x86_64 is supported.

#![deny(clippy::cast_possible_truncation)]

pub mod x86_64;
