//! The manager's store: one directory per container under
//! `<root>/containers/<id>/`:
//!
//! | file | written by | content |
//! |---|---|---|
//! | `container.json` | `create` | the record: name, command, `--rm`, restart policy |
//! | `config.json` | `create` | the generated OCI configuration (the bundle) |
//! | `rootfs/` | `create` | mount points of an image-less container |
//! | `monitor.json` | the monitor | its pid, and the start of the current run |
//! | `exit.json` | the monitor | exit code and time of the last run |
//! | `stop-requested` | `stop`, `kill`, `rm` | marker: do not apply the restart policy |
//! | `ctr.log` | the monitor | stdout and stderr in the CRI log format |
//! | `monitor.log` | the monitor | the monitor's own messages |
//! | `lock` | every command | POSIX record lock that serialises commands on the container |
//!
//! Every JSON file is written to a temporary file and renamed, so a reader
//! sees a whole version. Name reservation is serialised by an flock on
//! `<root>/containers.lock`, so two `run --name X` cannot both win.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const RECORD_FILE: &str = "container.json";
pub const MONITOR_FILE: &str = "monitor.json";
pub const EXIT_FILE: &str = "exit.json";
pub const STOP_MARKER: &str = "stop-requested";
pub const LOG_FILE: &str = "ctr.log";
pub const MONITOR_LOG_FILE: &str = "monitor.log";
const LOCK_FILE: &str = "lock";

/// When the monitor starts a container again after it exited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "policy")]
pub enum RestartPolicy {
    #[default]
    No,
    /// After a non-zero exit, at most `max_retries` times (0: no limit).
    OnFailure {
        #[serde(rename = "maxRetries")]
        max_retries: u32,
    },
    Always,
}

impl RestartPolicy {
    /// Parses `no`, `on-failure`, `on-failure:N` or `always`, as podman's
    /// `--restart` does.
    pub fn parse(text: &str) -> Result<RestartPolicy> {
        let invalid = |why: &str| Error::InvalidArgument(format!("invalid --restart \"{text}\": {why}"));
        match text.split_once(':') {
            None => match text {
                "no" => Ok(RestartPolicy::No),
                "on-failure" => Ok(RestartPolicy::OnFailure { max_retries: 0 }),
                "always" => Ok(RestartPolicy::Always),
                _ => Err(invalid("use no, on-failure[:N] or always")),
            },
            Some(("on-failure", count)) => match count.parse::<u32>() {
                Ok(max_retries) => Ok(RestartPolicy::OnFailure { max_retries }),
                Err(_) => Err(invalid("the retry count must be a non-negative integer")),
            },
            Some(_) => Err(invalid("only on-failure takes a retry count (on-failure:N)")),
        }
    }

    /// Reports whether a run that ended with `exit_code`, after
    /// `restarts` restarts so far, is started again.
    pub fn should_restart(&self, exit_code: i32, restarts: u32) -> bool {
        match *self {
            RestartPolicy::No => false,
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure { max_retries } => exit_code != 0 && (max_retries == 0 || restarts < max_retries),
        }
    }
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::OnFailure { max_retries: 0 } => f.write_str("on-failure"),
            RestartPolicy::OnFailure { max_retries } => write!(f, "on-failure:{max_retries}"),
            RestartPolicy::Always => f.write_str("always"),
        }
    }
}

/// The manager's record of a container, written once by `create`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub created: String,
    pub command: Vec<String>,
    /// `--rm`: the monitor removes the container when it exits.
    #[serde(default)]
    pub auto_remove: bool,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// `-i`: the container's stdin is a pipe from the monitor, fed by the
    /// attached client.
    #[serde(default)]
    pub interactive: bool,
    /// `--log-max-size`: rotate the log past this many bytes.
    #[serde(default)]
    pub log_max_size: Option<u64>,
    /// `-t`: the container's stdio is a pty whose master the monitor holds.
    #[serde(default)]
    pub tty: bool,
    /// `--rootfs DIR` without `--rootfs-rw`: DIR, the lower layer of the
    /// overlay that is the container's root.
    #[serde(default)]
    pub rootfs_overlay: Option<PathBuf>,
    /// `--init`: the container's init stays as pid 1, reaping orphans and
    /// forwarding signals to the program.
    #[serde(default)]
    pub init: bool,
    /// `--bundle DIR`: the OCI bundle that the configuration came from.
    #[serde(default)]
    pub source_bundle: Option<PathBuf>,
}

/// The settings of a new container's record besides its name and command.
#[derive(Clone, Debug, Default)]
pub struct RecordOptions {
    pub auto_remove: bool,
    pub restart: RestartPolicy,
    pub interactive: bool,
    pub log_max_size: Option<u64>,
    pub tty: bool,
    pub rootfs_overlay: Option<PathBuf>,
    pub init: bool,
    pub source_bundle: Option<PathBuf>,
}

/// The monitor's record of itself and of the run in progress.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MonitorRecord {
    pub pid: i32,
    /// Start time of the monitor in clock ticks since boot, to tell it from
    /// a later process with the same pid.
    pub pid_start_time: u64,
    /// Host pid of the container's init in the current run (0 before the
    /// first start).
    #[serde(default)]
    pub container_pid: i32,
    #[serde(default)]
    pub started_at: Option<String>,
    /// Number of times the monitor started the container again.
    #[serde(default)]
    pub restart_count: u32,
}

impl MonitorRecord {
    pub fn alive(&self) -> bool {
        runtime::state::process_alive(self.pid, self.pid_start_time)
    }
}

/// The end of one run of a container.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    /// The init's exit status; 128+N when signal N killed it.
    pub exit_code: i32,
    pub started_at: Option<String>,
    pub finished_at: String,
    /// Restarts before this run: distinguishes the exits of one container.
    pub restart_count: u32,
}

/// A container directory and its record.
#[derive(Clone, Debug)]
pub struct Entry {
    pub dir: PathBuf,
    pub record: ContainerRecord,
}

impl Entry {
    pub fn id(&self) -> &str {
        &self.record.id
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    pub fn monitor(&self) -> Result<Option<MonitorRecord>> {
        load_optional(&self.dir.join(MONITOR_FILE))
    }

    pub fn exit(&self) -> Result<Option<ExitRecord>> {
        load_optional(&self.dir.join(EXIT_FILE))
    }

    pub fn save_monitor(&self, record: &MonitorRecord) -> Result<()> {
        save_json(&self.dir.join(MONITOR_FILE), record)
    }

    pub fn save_exit(&self, record: &ExitRecord) -> Result<()> {
        save_json(&self.dir.join(EXIT_FILE), record)
    }

    pub fn stop_requested(&self) -> bool {
        self.dir.join(STOP_MARKER).exists()
    }

    /// Sets or clears the marker that keeps the monitor from restarting the
    /// container after this exit.
    pub fn set_stop_requested(&self, requested: bool) -> Result<()> {
        let path = self.dir.join(STOP_MARKER);
        let result = if requested {
            fs::write(&path, b"")
        } else {
            match fs::remove_file(&path) {
                Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        };
        result.map_err(|err| Error::io(format!("update {}", path.display()), err))
    }

    /// Takes the container's lock, waiting while another command holds it.
    /// The lock is a POSIX record lock: it is not inherited by `fork`, so
    /// the monitor that a command forks never holds it by accident.
    pub fn lock(&self) -> Result<ContainerLock> {
        let path = self.dir.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|err| match err.kind() {
                io::ErrorKind::NotFound => Error::NotFound(self.record.id.clone()),
                _ => Error::io(format!("open {}", path.display()), err),
            })?;
        runtime::state::write_lock_whole_file(&file).map_err(|err| Error::io(format!("lock {}", path.display()), err))?;
        // A container removed while this command waited for the lock is gone.
        if !self.dir.join(RECORD_FILE).exists() {
            return Err(Error::NotFound(self.record.id.clone()));
        }
        Ok(ContainerLock { _file: file })
    }
}

/// A held container lock, released on drop.
pub struct ContainerLock {
    _file: File,
}

pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: PathBuf) -> Self {
        Store { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }

    fn lock(&self) -> Result<File> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.containers())
            .map_err(|err| Error::io(format!("create store {}", self.containers().display()), err))?;
        let path = self.root.join("containers.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|err| Error::io(format!("open {}", path.display()), err))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } < 0 {
            return Err(Error::io(format!("lock {}", path.display()), io::Error::last_os_error()));
        }
        Ok(file)
    }

    /// Creates the directory and record of a new container, reserving its
    /// name. Without a name, the container is named after its short id.
    pub fn create(&self, name: Option<&str>, command: &[String], options: RecordOptions) -> Result<Entry> {
        if let Some(name) = name {
            validate_name(name)?;
        }
        let _lock = self.lock()?;
        let id = new_id()?;
        let name = name.map(str::to_owned).unwrap_or_else(|| id[..12].to_owned());
        for record in self.list()?.into_iter().flatten() {
            if record.record.name == name {
                return Err(Error::NameInUse { name, id: record.record.id });
            }
        }
        let dir = self.containers().join(&id);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|err| Error::io(format!("create {}", dir.display()), err))?;
        let record = ContainerRecord {
            id,
            name,
            created: runtime::state::now_rfc3339(),
            command: command.to_vec(),
            auto_remove: options.auto_remove,
            restart: options.restart,
            interactive: options.interactive,
            log_max_size: options.log_max_size,
            tty: options.tty,
            rootfs_overlay: options.rootfs_overlay,
            init: options.init,
            source_bundle: options.source_bundle,
        };
        if let Err(err) = save_json(&dir.join(RECORD_FILE), &record) {
            let _ = fs::remove_dir_all(&dir);
            return Err(err);
        }
        Ok(Entry { dir, record })
    }

    /// Removes a container's directory.
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.containers().join(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(Error::io(format!("remove {}", dir.display()), err)),
        }
    }

    /// Loads the entry of container `id` (a full id).
    pub fn get(&self, id: &str) -> Result<Entry> {
        let dir = self.containers().join(id);
        if !dir.join(RECORD_FILE).exists() {
            return Err(Error::NotFound(id.to_owned()));
        }
        let record = load(id, &dir)?;
        Ok(Entry { dir, record })
    }

    /// Lists every container, sorted by creation time; a damaged record is
    /// returned as an error in its place.
    pub fn list(&self) -> Result<Vec<Result<Entry>>> {
        let entries = match fs::read_dir(self.containers()) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(Error::io(format!("read {}", self.containers().display()), err)),
        };
        let mut listed = Vec::new();
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            let dir = entry.path();
            if dir.join(RECORD_FILE).exists() {
                listed.push(load(&id, &dir).map(|record| Entry { dir, record }));
            }
        }
        listed.sort_by(|a, b| match (a, b) {
            (Ok(a), Ok(b)) => a.record.created.cmp(&b.record.created),
            (Ok(_), Err(_)) => std::cmp::Ordering::Less,
            (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
            (Err(_), Err(_)) => std::cmp::Ordering::Equal,
        });
        Ok(listed)
    }

    /// Finds a container by full id, name, or unique id prefix, in that
    /// order, as podman does.
    pub fn resolve(&self, query: &str) -> Result<Entry> {
        if query.is_empty() {
            return Err(Error::InvalidArgument("empty container name or id".into()));
        }
        let is_hex = query.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if is_hex && query.len() == 64 {
            if let Ok(entry) = self.get(query) {
                return Ok(entry);
            }
        }
        let mut prefixed = Vec::new();
        for listed in self.list()? {
            match listed {
                Ok(entry) if entry.record.name == query => return Ok(entry),
                Ok(entry) if is_hex && entry.record.id.starts_with(query) => prefixed.push(entry),
                Ok(_) => {}
                // A damaged record still has its id as directory name, so
                // `rm` can reach it by id.
                Err(Error::CorruptRecord { id, message }) if is_hex && id.starts_with(query) => {
                    return Err(Error::CorruptRecord { id, message })
                }
                Err(_) => {}
            }
        }
        match prefixed.len() {
            0 => Err(Error::NotFound(query.to_owned())),
            1 => Ok(prefixed.remove(0)),
            _ => Err(Error::InvalidArgument(format!(
                "container id prefix \"{query}\" is ambiguous: it matches {}; give more digits",
                prefixed.iter().map(|e| &e.record.id[..12]).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// Returns the directory of container `id`, which may hold a damaged
    /// record.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }
}

fn save_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let data = serde_json::to_vec_pretty(value).expect("store records always serialise");
    Ok(runtime::state::write_atomic(path, &data, 0o600)?)
}

fn load_optional<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let data = match fs::read(path) {
        Ok(data) => data,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(Error::io(format!("read {}", path.display()), err)),
    };
    serde_json::from_slice(&data).map(Some).map_err(|err| Error::CorruptRecord {
        id: path.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        message: format!("{}: {err}", path.display()),
    })
}

fn load(id: &str, dir: &Path) -> Result<ContainerRecord> {
    let path = dir.join(RECORD_FILE);
    let data = fs::read(&path).map_err(|err| Error::io(format!("read {}", path.display()), err))?;
    serde_json::from_slice(&data).map_err(|err| Error::CorruptRecord {
        id: id.to_owned(),
        message: format!("{}: {err}", path.display()),
    })
}

/// Names follow the rule podman applies: a letter or digit, then letters,
/// digits, `_`, `.` and `-`.
fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 253;
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid container name \"{name}\": use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )))
    }
}

/// Returns a new random 64-digit hex id.
fn new_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    // SAFETY: getrandom fills the buffer it is given.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        return Err(Error::io("read random bytes for an id", io::Error::last_os_error()));
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("web-1").is_ok());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("").is_err());
    }

    #[test]
    fn duplicate_name_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().to_owned());
        let first = store.create(Some("one"), &["true".into()], RecordOptions::default()).unwrap();
        let err = store.create(Some("one"), &["true".into()], RecordOptions::default()).err().unwrap();
        assert!(err.to_string().contains(&first.record.id), "{err}");
        store.remove(&first.record.id).unwrap();
        assert!(store.create(Some("one"), &["true".into()], RecordOptions::default()).is_ok());
    }

    #[test]
    fn resolve_name_id_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().to_owned());
        let web = store.create(Some("web"), &["true".into()], RecordOptions::default()).unwrap();
        let id = web.record.id.clone();

        assert_eq!(store.resolve("web").unwrap().record.id, id);
        assert_eq!(store.resolve(&id).unwrap().record.id, id);
        assert_eq!(store.resolve(&id[..5]).unwrap().record.id, id);
        assert!(matches!(store.resolve("nothing"), Err(Error::NotFound(_))));
        assert!(matches!(store.resolve(""), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn resolve_ambiguous_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().to_owned());
        // 40 containers make a shared first hex digit certain.
        let ids: Vec<String> =
            (0..40).map(|_| store.create(None, &["true".into()], RecordOptions::default()).unwrap().record.id).collect();
        let digit = ids
            .iter()
            .map(|id| &id[..1])
            .find(|d| ids.iter().filter(|id| id.starts_with(*d)).count() > 1)
            .unwrap()
            .to_owned();

        let err = store.resolve(&digit).err().unwrap();

        assert!(err.to_string().contains("ambiguous"), "{err}");
    }

    #[test]
    fn restart_policy_parse() {
        assert_eq!(RestartPolicy::parse("no").unwrap(), RestartPolicy::No);
        assert_eq!(RestartPolicy::parse("always").unwrap(), RestartPolicy::Always);
        assert_eq!(RestartPolicy::parse("on-failure").unwrap(), RestartPolicy::OnFailure { max_retries: 0 });
        assert_eq!(RestartPolicy::parse("on-failure:3").unwrap(), RestartPolicy::OnFailure { max_retries: 3 });
        for bad in ["sometimes", "on-failure:x", "always:2", ""] {
            let err = RestartPolicy::parse(bad).err().unwrap();
            assert!(err.to_string().contains(&format!("\"{bad}\"")), "{err}");
        }
    }

    #[test]
    fn restart_policy_decisions() {
        let limited = RestartPolicy::OnFailure { max_retries: 2 };
        assert!(limited.should_restart(1, 0));
        assert!(limited.should_restart(1, 1));
        assert!(!limited.should_restart(1, 2));
        assert!(!limited.should_restart(0, 0));
        assert!(RestartPolicy::Always.should_restart(0, 100));
        assert!(!RestartPolicy::No.should_restart(1, 0));
    }
}
