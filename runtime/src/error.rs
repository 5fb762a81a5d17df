//! The runtime's error type.
//!
//! Every variant names the operation and the value it failed on, so that a
//! message printed once by the CLI reads like a path through the layers:
//! `mount "proc" on "/proc": permission denied`. No variant captures a
//! backtrace: an error is a routine outcome on many paths (a missing id, a
//! stopped container) and must stay cheap.

use std::io;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// config.json could not be read or parsed.
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },

    /// The configuration is well-formed but requests something invalid or
    /// something this runtime does not implement.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    #[error("container \"{0}\" does not exist")]
    NotFound(String),

    #[error("container \"{0}\" already exists: remove it with `delete --force {0}`, or use another id")]
    AlreadyExists(String),

    #[error("invalid container id \"{0}\": use 1 to 1024 characters from [A-Za-z0-9_+.-], not starting with '.'")]
    InvalidId(String),

    /// The container is in a state that does not allow the operation.
    #[error("container \"{id}\" is {status}: {message}")]
    WrongState {
        id: String,
        status: String,
        message: String,
    },

    /// A command-line or API argument is invalid.
    #[error("{0}")]
    InvalidArgument(String),

    /// The container's init process reported a failure while it set up the
    /// container.
    #[error("container init failed: {0}")]
    Init(String),

    /// The container's init has exited. The wording contains "container not
    /// running", which containerd and podman match to recognise this case.
    #[error("container not running: \"{0}\" has stopped")]
    NotRunning(String),

    /// An `exec` process failed before it ran its program.
    #[error("exec failed: {0}")]
    Exec(String),

    /// A lifecycle hook failed.
    #[error("{0}")]
    Hook(String),

    /// State on disk is damaged.
    #[error("state of container \"{id}\" is unreadable: {message}")]
    CorruptState { id: String, message: String },
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Builds an `Io` error from the current `errno`.
    pub fn last_os(context: impl Into<String>) -> Self {
        Self::io(context, io::Error::last_os_error())
    }

    pub fn errno(context: impl Into<String>, errno: nix::errno::Errno) -> Self {
        Self::io(context, io::Error::from_raw_os_error(errno as i32))
    }

    /// Returns the underlying OS error number, if there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Adds context to fallible operations on the way up.
pub trait Context<T> {
    fn context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, io::Error> {
    fn context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|source| Error::io(context(), source))
    }
}

impl<T> Context<T> for std::result::Result<T, nix::errno::Errno> {
    fn context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|errno| Error::errno(context(), errno))
    }
}
