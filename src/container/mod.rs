//! minnow's container runtime (work in progress).
