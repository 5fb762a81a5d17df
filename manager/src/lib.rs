//! conman's container manager: runs containers from a rootfs directory or
//! from nothing but the host's programs, keeping their records on disk.
//!
//! The manager drives the runtime library in its own process: it writes an
//! OCI bundle into its store and calls [`runtime::Runtime`] directly, so no
//! runtime binary is ever executed.

pub mod error;
pub mod seccomp;
pub mod spec;
pub mod store;

use std::path::{Path, PathBuf};

pub use error::{Error, Result};
use runtime::{CreateOptions, Runtime};
use store::{ContainerRecord, Store};

/// Source of a container's root filesystem.
#[derive(Clone, Debug)]
pub enum RootfsSource {
    /// No image: a read-only view of the host's programs and libraries.
    Host,
    /// A directory used as the container's root as it is.
    Directory(PathBuf),
}

/// Options of `conman run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub name: Option<String>,
    pub rootfs: RootfsSource,
    pub remove: bool,
    pub args: Vec<String>,
    pub settings: spec::Settings,
}

/// The manager: a store directory holding container records and bundles,
/// and the runtime state of the running containers.
pub struct Manager {
    store: Store,
    runtime: Runtime,
}

impl Manager {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Manager {
            runtime: Runtime::new(root.join("runtime")),
            store: Store::new(root),
        }
    }

    pub fn root(&self) -> &Path {
        self.store.root()
    }

    /// Runs a container in the foreground and returns its exit status
    /// (128+N when it was killed by signal N).
    pub fn run(&self, options: &RunOptions) -> Result<i32> {
        if options.args.is_empty() {
            return Err(Error::InvalidArgument("no command given: use `conman run -- CMD [ARGS...]`".into()));
        }
        let rootfs_source = match &options.rootfs {
            RootfsSource::Directory(dir) => {
                let canonical = std::fs::canonicalize(dir).map_err(|err| {
                    Error::InvalidArgument(format!("--rootfs {}: {err}", dir.display()))
                })?;
                if !canonical.is_dir() {
                    return Err(Error::InvalidArgument(format!("--rootfs {} is not a directory", dir.display())));
                }
                RootfsSource::Directory(canonical)
            }
            RootfsSource::Host => RootfsSource::Host,
        };

        options.settings.check()?;
        let entry = self.store.create(options.name.as_deref(), &options.args)?;
        let result = self.run_created(&entry, &rootfs_source, &options.settings);
        match &result {
            Ok(code) => tracing::info!(id = %entry.record.id, exit_code = code, "container exited"),
            Err(err) => tracing::error!(id = %entry.record.id, error = %err, "container failed"),
        }
        let finished = match &result {
            Ok(code) => Some(*code),
            Err(_) => None,
        };
        if options.remove || result.is_err() {
            // A container that never ran leaves no record behind.
            self.store.remove(&entry.record.id)?;
        } else {
            self.store.finish(&entry.record.id, finished)?;
        }
        result
    }

    fn run_created(&self, entry: &store::Entry, source: &RootfsSource, settings: &spec::Settings) -> Result<i32> {
        let record: &ContainerRecord = &entry.record;
        let rootfs = match source {
            RootfsSource::Directory(dir) => dir.clone(),
            RootfsSource::Host => {
                let dir = entry.dir.join("rootfs");
                spec::prepare_host_rootfs(&dir)?;
                dir
            }
        };
        let config = spec::build(record, &rootfs, source, settings)?;
        let bundle = entry.dir.clone();
        runtime::state::write_atomic(
            &bundle.join("config.json"),
            serde_json::to_string_pretty(&config).expect("config serialises").as_bytes(),
            0o600,
        )?;
        let options = CreateOptions {
            bundle,
            ..CreateOptions::default()
        };
        Ok(self.runtime.run(&record.id, &options, false)?)
    }

    /// Lists the records of all containers.
    pub fn list(&self) -> Result<Vec<Result<ContainerRecord>>> {
        self.store.list()
    }
}
