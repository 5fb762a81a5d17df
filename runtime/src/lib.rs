//! conman's OCI runtime library.
//!
//! It creates and manages containers from OCI bundles with direct system
//! calls. [`container::Runtime`] is the entry point: `create`, `start`,
//! `state`, `kill`, `delete` and `run`, with state kept under a root
//! directory as runc keeps it.

pub mod attributes;
pub mod cgroups;
pub mod device_filter;
pub mod container;
pub mod error;
pub mod exec;
pub mod features;
pub mod hooks;
pub mod init;
pub mod lsm;
pub mod mounts;
pub mod namespaces;
pub mod notify_socket;
pub mod process;
pub mod procfs;
pub mod reaper;
pub mod rootfs;
pub mod sealed_exe;
pub mod seccomp;
pub mod signal;
pub mod spec;
pub mod state;
pub mod sys;
pub mod terminal;
mod wait;

pub use container::{CreateOptions, Created, Runtime};
pub use error::{Error, Result};
pub use oci_spec;

/// Version of the OCI runtime spec this runtime implements.
pub const SPEC_VERSION: &str = "1.2.0";
