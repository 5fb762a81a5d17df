//! Container state on disk.
//!
//! Each container owns `<root>/<id>/`, holding `state.json` (written by
//! rename, so readers never see half a file) and, until the container is
//! started, the `exec.fifo` on which its init waits. Commands that act on a
//! container hold an exclusive POSIX record lock on `<root>/<id>/lock` for
//! their duration, which serialises concurrent commands on one id; `create`
//! makes the directory with `mkdir`, so two creates of one id cannot both
//! succeed. A record lock, unlike flock(2), is not inherited by fork: a
//! container process cloned while the lock is held (and possibly frozen in
//! its cgroup right after) never keeps other commands waiting.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";
pub const LOCK_FILE: &str = "lock";
pub const OCI_VERSION: &str = "1.2.0";

/// Lifecycle status, as the OCI runtime spec names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// The runtime's record of a container. The OCI state that `state`
/// prints is derived from it (see [`Record::oci_state`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub id: String,
    /// `created` until `start` has released the init, then `running`; the
    /// live status is computed from this and the init process.
    pub status: Status,
    pub pid: i32,
    /// Start time of the init in clock ticks since boot (field 22 of
    /// /proc/PID/stat), to tell the init from a later process that reused its
    /// pid.
    pub pid_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// Every cgroup directory the runtime created for the container.
    #[serde(default)]
    pub cgroup_paths: Vec<PathBuf>,
    /// Whether the container has its own pid namespace; without one,
    /// processes can outlive the init and `delete` must kill the cgroup.
    #[serde(default)]
    pub own_pid_namespace: bool,
    #[serde(default)]
    pub owner: u32,
    /// The runtime binary that the init runs until its execve, recorded
    /// when `create` did not re-execute from a protected view of it (see
    /// `sealed_exe::init_needs_protection`). `exec` checks it.
    #[serde(default)]
    pub unprotected_init_exe: Option<crate::sealed_exe::ExecutableId>,
}

/// The state object of the OCI runtime spec.
///
/// The fields are declared in the order in which runc 1.1 prints them
/// (pid before status, annotations after created), because scripts match
/// `state` and `list --format json` output line by line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    /// Not part of the OCI state, but printed by runc and read by tools.
    #[serde(default)]
    pub rootfs: PathBuf,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created: String,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
    #[serde(default)]
    pub owner: String,
}

impl Record {
    /// Returns the live status: the recorded one while the init lives, and
    /// `stopped` once it has exited (or is a zombie).
    pub fn live_status(&self) -> Status {
        if self.pid <= 0 || !process_alive(self.pid, self.pid_start_time) {
            return Status::Stopped;
        }
        if self.status == Status::Running && crate::cgroups::is_frozen(&self.cgroup_paths) {
            return Status::Paused;
        }
        self.status
    }

    pub fn oci_state(&self) -> OciState {
        let status = self.live_status();
        OciState {
            oci_version: OCI_VERSION.into(),
            id: self.id.clone(),
            status,
            pid: if status == Status::Stopped { 0 } else { self.pid },
            bundle: self.bundle.clone(),
            annotations: self.annotations.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: user_name(self.owner),
        }
    }
}

/// Returns the host's name for `uid` from /etc/passwd, or the number, as
/// runc shows a container's owner.
pub fn user_name(uid: u32) -> String {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
        })
        .unwrap_or_else(|| uid.to_string())
}

/// Reads the state letter and start time of a process from /proc/PID/stat.
pub fn process_stat(pid: i32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in field 2 may contain spaces and parentheses, so
    // split after its last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3; the start time is field 22.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some((state, start_time))
}

/// Reports whether `pid` is the live (not zombie) process that started at
/// `start_time`.
pub fn process_alive(pid: i32, start_time: u64) -> bool {
    match process_stat(pid) {
        Some((state, started)) => started == start_time && state != 'Z' && state != 'X',
        None => false,
    }
}

/// Checks a container id the way runc does, which also keeps ids safe as
/// path components.
pub fn validate_id(id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_owned()))
    }
}

/// The state root: one directory per container.
#[derive(Clone, Debug)]
pub struct Store {
    pub root: PathBuf,
}

/// A container directory locked for the lifetime of this value.
#[derive(Debug)]
pub struct Locked {
    pub id: String,
    pub dir: PathBuf,
    _lock: File,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    fn ensure_root(&self) -> Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.root)
            .context(|| format!("create state root {}", self.root.display()))
    }

    /// Creates and locks the directory of a new container. Fails with
    /// [`Error::AlreadyExists`] when the id is taken.
    pub fn create(&self, id: &str) -> Result<Locked> {
        validate_id(id)?;
        self.ensure_root()?;
        let dir = self.container_dir(id);
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(id.to_owned()))
            }
            Err(err) => return Err(Error::io(format!("create {}", dir.display()), err)),
        }
        match lock_dir(&dir, true) {
            Ok(lock) => Ok(Locked {
                id: id.to_owned(),
                dir,
                _lock: lock,
            }),
            Err(err) => {
                let _ = fs::remove_dir_all(&dir);
                Err(err)
            }
        }
    }

    /// Locks an existing container's directory and loads its record.
    pub fn open(&self, id: &str) -> Result<(Locked, Record)> {
        validate_id(id)?;
        let dir = self.container_dir(id);
        let lock = match lock_dir(&dir, false) {
            Ok(lock) => lock,
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                return Err(Error::NotFound(id.to_owned()))
            }
            Err(err) => return Err(err),
        };
        let locked = Locked {
            id: id.to_owned(),
            dir,
            _lock: lock,
        };
        let record = locked.load()?;
        Ok((locked, record))
    }

    /// Loads a record without taking the lock, for read-only listing.
    pub fn peek(&self, id: &str) -> Result<Record> {
        load_record(id, &self.container_dir(id))
    }

    /// Lists the ids of all containers, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(Error::io(format!("read {}", self.root.display()), err)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.context(|| format!("read {}", self.root.display()))?;
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if validate_id(&name).is_ok() {
                    ids.push(name);
                }
            }
        }
        ids.sort();
        Ok(ids)
    }
}

/// Takes the write lock of a container directory, creating the lock file
/// when `create` is set; waits while another command holds it.
fn lock_dir(dir: &Path, create: bool) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|err| Error::io(format!("open {}", path.display()), err))?;
    write_lock_whole_file(&file).map_err(|err| Error::io(format!("lock {}", path.display()), err))?;
    Ok(file)
}

/// Takes an exclusive POSIX record lock on all of `file`, waiting while
/// another process holds one. The lock goes with the process, not the
/// descriptor, so a child made by fork does not inherit it; `file` must be
/// open for writing.
pub fn write_lock_whole_file(file: &File) -> io::Result<()> {
    let lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    loop {
        // SAFETY: F_SETLKW with a valid flock structure.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLKW, &lock) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

fn load_record(id: &str, dir: &Path) -> Result<Record> {
    let path = dir.join(STATE_FILE);
    let text = match fs::read(&path) {
        Ok(text) => text,
        // The directory exists but its creator failed or has not finished:
        // to every other command, the container does not exist.
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(Error::NotFound(id.to_owned()))
        }
        Err(err) => return Err(Error::io(format!("read {}", path.display()), err)),
    };
    serde_json::from_slice(&text).map_err(|err| Error::CorruptState {
        id: id.to_owned(),
        message: format!("{}: {err}", path.display()),
    })
}

impl Locked {
    pub fn load(&self) -> Result<Record> {
        load_record(&self.id, &self.dir)
    }

    pub fn save(&self, record: &Record) -> Result<()> {
        let data = serde_json::to_vec(record).expect("a Record always serialises");
        write_atomic(&self.dir.join(STATE_FILE), &data, 0o600)
    }

    pub fn fifo_path(&self) -> PathBuf {
        self.dir.join(EXEC_FIFO)
    }

    /// Removes the container's directory and everything in it.
    pub fn remove(self) -> Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(Error::io(format!("remove {}", self.dir.display()), err)),
        }
    }
}

/// Writes `data` to `path` through a temporary file and a rename, so readers
/// see either the old or the new content.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let write = || -> io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(data)?;
        fs::rename(&tmp, path)
    };
    write().map_err(|err| {
        let _ = fs::remove_file(&tmp);
        Error::io(format!("write {}", path.display()), err)
    })
}

/// Formats the current time as RFC 3339 in UTC with nanoseconds, as runc
/// prints `created`.
pub fn now_rfc3339() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format_rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

pub fn format_rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let day_secs = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(format_rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(format_rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(format_rfc3339(1_796_422_914, 0), "2026-12-04T22:21:54.000000000Z");
    }

    #[test]
    fn id_rules() {
        for good in ["a", "web-1", "x_y.z+1"] {
            assert!(validate_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a b", ".hidden"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn own_process_is_alive() {
        let pid = std::process::id() as i32;
        let (state, start) = process_stat(pid).unwrap();
        assert_ne!(state, 'Z');
        assert!(process_alive(pid, start));
        assert!(!process_alive(pid, start + 1));
    }

    #[test]
    fn duplicate_create_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let first = store.create("c1").unwrap();
        drop(first);
        assert!(matches!(store.create("c1"), Err(Error::AlreadyExists(_))));
    }
}
