//! The manager's store: one directory per container under
//! `<root>/containers/<id>/`, holding `container.json` (the record), the
//! generated `config.json`, and for image-less containers an empty `rootfs/`
//! of mount points. Name reservation is serialised by an flock on
//! `<root>/containers.lock`, so two `run --name X` cannot both win.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const RECORD_FILE: &str = "container.json";

/// The manager's record of a container.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub created: String,
    pub command: Vec<String>,
    /// `running` while `conman run` waits for it, then `exited`.
    pub status: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub finished: Option<String>,
}

/// A container directory and its record.
pub struct Entry {
    pub dir: PathBuf,
    pub record: ContainerRecord,
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
    pub fn create(&self, name: Option<&str>, command: &[String]) -> Result<Entry> {
        if let Some(name) = name {
            validate_name(name)?;
        }
        let _lock = self.lock()?;
        let id = new_id()?;
        let name = name.map(str::to_owned).unwrap_or_else(|| id[..12].to_owned());
        for record in self.list()?.into_iter().flatten() {
            if record.name == name {
                return Err(Error::NameInUse { name, id: record.id });
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
            status: "running".into(),
            exit_code: None,
            finished: None,
        };
        if let Err(err) = save(&dir, &record) {
            let _ = fs::remove_dir_all(&dir);
            return Err(err);
        }
        Ok(Entry { dir, record })
    }

    /// Records the exit of a container.
    pub fn finish(&self, id: &str, exit_code: Option<i32>) -> Result<()> {
        let dir = self.containers().join(id);
        let mut record = load(id, &dir)?;
        record.status = "exited".into();
        record.exit_code = exit_code;
        record.finished = Some(runtime::state::now_rfc3339());
        save(&dir, &record)
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

    /// Lists every record; a damaged one is returned as an error in place.
    pub fn list(&self) -> Result<Vec<Result<ContainerRecord>>> {
        let entries = match fs::read_dir(self.containers()) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(Error::io(format!("read {}", self.containers().display()), err)),
        };
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if entry.path().join(RECORD_FILE).exists() {
                records.push(load(&id, &entry.path()));
            }
        }
        Ok(records)
    }
}

fn save(dir: &Path, record: &ContainerRecord) -> Result<()> {
    let data = serde_json::to_vec_pretty(record).expect("a record always serialises");
    Ok(runtime::state::write_atomic(&dir.join(RECORD_FILE), &data, 0o600)?)
}

fn load(id: &str, dir: &Path) -> Result<ContainerRecord> {
    let path = dir.join(RECORD_FILE);
    let data = fs::read(&path).map_err(|err| Error::io(format!("read {}", path.display()), err))?;
    serde_json::from_slice(&data).map_err(|err| Error::CorruptRecord {
        id: id.to_owned(),
        message: err.to_string(),
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
        let first = store.create(Some("one"), &["true".into()]).unwrap();
        let err = store.create(Some("one"), &["true".into()]).err().unwrap();
        assert!(err.to_string().contains(&first.record.id), "{err}");
        store.remove(&first.record.id).unwrap();
        assert!(store.create(Some("one"), &["true".into()]).is_ok());
    }
}
