//! conman's container manager: runs containers from a rootfs directory or
//! from nothing but the host's programs, keeping their records on disk.
//!
//! The manager drives the runtime library in its own processes: it writes
//! an OCI bundle into its store and calls [`runtime::Runtime`] directly, so
//! no runtime binary is ever executed. Each started container gets a
//! monitor process (see [`monitor`]) that outlives the command that
//! started it.

pub mod bundle;
pub mod error;
pub mod log;
pub mod monitor;
pub mod overlay;
pub mod seccomp;
pub mod spec;
pub mod store;

mod commands;
mod status;

use std::path::{Path, PathBuf};

pub use commands::{terminal_size, ExecRequest, Stats};
pub use error::{Error, Result};
use runtime::Runtime;
pub use status::{Info, Status};
use store::{Entry, RestartPolicy, Store};

/// Source of a container's root filesystem.
#[derive(Clone, Debug)]
pub enum RootfsSource {
    /// No image: a read-only view of the host's programs and libraries.
    Host,
    /// A directory: the lower layer of an overlay that takes the
    /// container's writes, or with `--rootfs-rw` the root itself.
    Directory(PathBuf),
    /// An OCI bundle directory: its `config.json` is the container's
    /// configuration (see [`bundle`]), and its root the lower layer of an
    /// overlay, as for a directory.
    Bundle(PathBuf),
}

/// Options of `conman create` and `conman run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub name: Option<String>,
    pub rootfs: RootfsSource,
    /// `--rootfs-rw`: use the `--rootfs` directory itself, not an overlay.
    pub rootfs_rw: bool,
    /// `--rm`: remove the container when it exits.
    pub remove: bool,
    pub restart: RestartPolicy,
    /// `-i`: keep the container's stdin open, fed by the foreground `run`.
    pub interactive: bool,
    /// `--log-max-size`: the log is rotated past this many bytes.
    pub log_max_size: Option<u64>,
    /// `-t`: give the container a pty, with this initial size (rows,
    /// columns) when the caller's stdin is a terminal.
    pub tty: Option<Option<(u16, u16)>>,
    /// `--init`: a minimal init stays as pid 1, forwards signals to the
    /// program and reaps orphans.
    pub init: bool,
    /// The command; with a bundle, empty means the bundle's `process.args`.
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
    /// Opens the store at `root`; a relative path is made absolute, because
    /// monitors run from `/`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        Manager {
            runtime: Runtime::new(root.join("runtime")),
            store: Store::new(root),
        }
    }

    pub fn root(&self) -> &Path {
        self.store.root()
    }

    /// Creates a container: checks the options, records it and writes its
    /// bundle. Nothing runs until [`Manager::start`].
    pub fn create(&self, options: &RunOptions) -> Result<Entry> {
        let source_bundle = match &options.rootfs {
            RootfsSource::Bundle(dir) => {
                let conflicts = bundle::conflicting_flags(&options.settings);
                if !conflicts.is_empty() {
                    return Err(Error::InvalidArgument(format!(
                        "--bundle cannot be combined with {}: the bundle's config.json sets the container's mounts, resources, network and security; change them there",
                        conflicts.join(", ")
                    )));
                }
                Some(bundle::open(dir)?)
            }
            _ => None,
        };
        let args = match &source_bundle {
            Some(source) if options.args.is_empty() => bundle::args(source),
            _ => options.args.clone(),
        };
        if args.is_empty() {
            return Err(Error::InvalidArgument("no command given: use `conman run -- CMD [ARGS...]`".into()));
        }
        if options.remove && options.restart != RestartPolicy::No {
            return Err(Error::InvalidArgument(format!(
                "--rm conflicts with --restart {}: a removed container cannot be restarted",
                options.restart
            )));
        }
        let rootfs_source = match &options.rootfs {
            RootfsSource::Directory(dir) => {
                let canonical = std::fs::canonicalize(dir)
                    .map_err(|err| Error::InvalidArgument(format!("--rootfs {}: {err}", dir.display())))?;
                if !canonical.is_dir() {
                    return Err(Error::InvalidArgument(format!("--rootfs {} is not a directory", dir.display())));
                }
                RootfsSource::Directory(canonical)
            }
            RootfsSource::Bundle(_) => {
                RootfsSource::Bundle(source_bundle.as_ref().expect("opened above").rootfs.clone())
            }
            RootfsSource::Host => RootfsSource::Host,
        };
        options.settings.check()?;
        let rootfs_overlay = match &rootfs_source {
            RootfsSource::Directory(dir) if !options.rootfs_rw => {
                overlay::check_lower(dir)?;
                Some(dir.clone())
            }
            RootfsSource::Bundle(dir) if !options.rootfs_rw => {
                let text = dir.to_string_lossy();
                if text.contains(',') || text.contains(':') {
                    return Err(Error::InvalidArgument(format!(
                        "root.path {text} of the bundle contains ',' or ':', so it cannot be an overlay layer; rename the directory"
                    )));
                }
                Some(dir.clone())
            }
            _ => None,
        };
        let record_options = store::RecordOptions {
            auto_remove: options.remove,
            restart: options.restart,
            interactive: options.interactive,
            log_max_size: options.log_max_size,
            tty: options.tty.is_some(),
            rootfs_overlay,
            init: options.init,
            source_bundle: source_bundle.as_ref().map(|source| source.dir.clone()),
        };
        let entry = self.store.create(options.name.as_deref(), &args, record_options)?;
        let written = match &source_bundle {
            Some(source) => self.write_bundle_copy(&entry, source, &options.settings, options.tty),
            None => self.write_bundle(&entry, &rootfs_source, &options.settings, options.tty),
        };
        if let Err(err) = written {
            let _ = self.store.remove(entry.id());
            return Err(err);
        }
        tracing::info!(id = entry.id(), name = %entry.record.name, "container created");
        Ok(entry)
    }

    fn write_bundle(&self, entry: &Entry, source: &RootfsSource, settings: &spec::Settings, tty_size: Option<Option<(u16, u16)>>) -> Result<()> {
        let rootfs = match source {
            RootfsSource::Directory(_) | RootfsSource::Bundle(_) if entry.record.rootfs_overlay.is_some() => {
                overlay::prepare(&entry.dir)?;
                entry.dir.join(overlay::MERGED_DIR)
            }
            RootfsSource::Directory(dir) | RootfsSource::Bundle(dir) => dir.clone(),
            RootfsSource::Host => {
                let dir = entry.dir.join("rootfs");
                spec::prepare_host_rootfs(&dir)?;
                dir
            }
        };
        let config = spec::build(&entry.record, &rootfs, source, settings)?;
        write_config(entry, config, tty_size)
    }

    /// Writes the container's configuration made from `source`'s, with the
    /// overlay on the bundle's root as its root (the bundle's root itself
    /// with `rootfs_rw`).
    fn write_bundle_copy(&self, entry: &Entry, source: &bundle::SourceBundle, settings: &spec::Settings, tty_size: Option<Option<(u16, u16)>>) -> Result<()> {
        let rootfs = if entry.record.rootfs_overlay.is_some() {
            overlay::prepare(&entry.dir)?;
            entry.dir.join(overlay::MERGED_DIR)
        } else {
            source.rootfs.clone()
        };
        let config = bundle::build(source, &rootfs, &entry.record.command, settings)?;
        write_config(entry, config, tty_size)
    }

    /// Creates a container and starts it in the background; returns its id.
    pub fn run_detached(&self, options: &RunOptions) -> Result<String> {
        let entry = self.create(options)?;
        match monitor::spawn(self, &entry, false) {
            Ok(_) => Ok(entry.record.id),
            Err(err) => {
                // A container that never ran leaves no record behind.
                let _ = self.store.remove(entry.id());
                Err(err)
            }
        }
    }

    /// Creates and starts a container, relays its output to this process's
    /// stdout and stderr, and forwards termination signals to it. Returns
    /// its exit code. If this process is killed, the container keeps
    /// running under its monitor.
    pub fn run_attached(&self, options: &RunOptions) -> Result<i32> {
        let entry = self.create(options)?;
        let forwarded = commands::block_forwarded_signals()?;
        let client = match monitor::spawn(self, &entry, true) {
            Ok(client) => client.expect("an attached spawn returns the client socket"),
            Err(err) => {
                commands::restore_signals(&forwarded);
                let _ = self.store.remove(entry.id());
                return Err(err);
            }
        };
        let result = self.relay(&entry, client, options.interactive, options.tty.is_some());
        commands::restore_signals(&forwarded);
        result
    }

    /// Starts a created or exited container in the background.
    pub fn start(&self, query: &str) -> Result<Entry> {
        let entry = self.store.resolve(query)?;
        let _lock = entry.lock()?;
        let info = self.info(entry.clone())?;
        match info.status {
            Status::Created | Status::Exited => {}
            Status::Lost => {
                // Clean what the dead monitor left of the last run.
                self.runtime.delete(entry.id(), true)?;
                overlay::unmount(&entry.dir)?;
            }
            status => {
                return Err(Error::WrongState {
                    name: entry.record.name.clone(),
                    status: status.to_string(),
                    message: "only a created or stopped container can be started".into(),
                })
            }
        }
        entry.set_stop_requested(false)?;
        // The records of the last run go; until the new monitor writes its
        // own, the container reads as created.
        for file in [store::EXIT_FILE, store::MONITOR_FILE] {
            let path = entry.dir.join(file);
            if let Err(err) = std::fs::remove_file(&path) {
                if err.kind() != std::io::ErrorKind::NotFound {
                    return Err(Error::io(format!("remove {}", path.display()), err));
                }
            }
        }
        monitor::spawn(self, &entry, false)?;
        Ok(entry)
    }

    /// Returns the live status of the container `entry`.
    pub fn info(&self, entry: Entry) -> Result<Info> {
        status::info(&self.runtime, entry)
    }

    /// Lists all containers with their live status; a damaged record is
    /// returned as an error in its place.
    pub fn list(&self) -> Result<Vec<Result<Info>>> {
        Ok(self.store.list()?.into_iter().map(|listed| listed.and_then(|entry| self.info(entry))).collect())
    }

    /// Finds a container by name, full id or unique id prefix.
    pub fn resolve(&self, query: &str) -> Result<Entry> {
        self.store.resolve(query)
    }
}

/// Sets the terminal of `config` from `-t` and writes it as the
/// container's `config.json`.
fn write_config(entry: &Entry, mut config: serde_json::Value, tty_size: Option<Option<(u16, u16)>>) -> Result<()> {
    if let Some(size) = tty_size {
        config["process"]["terminal"] = serde_json::json!(true);
        if let Some((rows, columns)) = size {
            config["process"]["consoleSize"] = serde_json::json!({ "height": rows, "width": columns });
        }
    }
    runtime::state::write_atomic(
        &entry.dir.join("config.json"),
        serde_json::to_string_pretty(&config).expect("config serialises").as_bytes(),
        0o600,
    )?;
    Ok(())
}
