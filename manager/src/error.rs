//! The manager's error type.

use std::io;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] runtime::Error),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error("{0}")]
    InvalidArgument(String),

    #[error("the name \"{name}\" is already in use by container {id}: remove it with `conman rm {name}`, or choose another --name")]
    NameInUse { name: String, id: String },

    #[error("no container named or with id \"{0}\"")]
    NotFound(String),

    #[error("record of container {id} is unreadable: {message}")]
    CorruptRecord { id: String, message: String },

    /// Starting the container failed; the message is the runtime's.
    #[error("{0}")]
    StartFailed(String),

    /// The container is in a state that does not allow the operation.
    #[error("container {name} is {status}: {message}")]
    WrongState { name: String, status: String, message: String },
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
