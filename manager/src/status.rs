//! The live status of a container, derived when read from three sources:
//! the monitor's record (is its process alive?), the runtime's state (is
//! the container's init alive?), and the exit record.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::{Entry, ExitRecord, MonitorRecord};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created and never started.
    Created,
    /// The monitor runs and is creating the container.
    Starting,
    Running,
    Paused,
    /// The container exited and its monitor will start it again.
    Restarting,
    /// The container exited and its exit code is recorded.
    Exited,
    /// The container runs, but its monitor is gone (killed), so neither its
    /// output nor its exit is recorded.
    Unmonitored,
    /// The monitor is gone and so is the container; its exit code is
    /// unknown.
    Lost,
}

impl Status {
    /// Reports whether the container may have processes running: the ones
    /// `ps` lists without `-a`.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Starting | Status::Running | Status::Paused | Status::Restarting | Status::Unmonitored)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Status::Created => "created",
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Unmonitored => "unmonitored",
            Status::Lost => "lost",
        })
    }
}

/// A container with its live status.
#[derive(Clone, Debug)]
pub struct Info {
    pub entry: Entry,
    pub status: Status,
    /// Host pid of the container's init while it runs, else 0.
    pub pid: i32,
    pub monitor: Option<MonitorRecord>,
    pub monitor_alive: bool,
    /// The exit of the last run, when it is recorded.
    pub exit: Option<ExitRecord>,
}

pub(crate) fn info(runtime: &runtime::Runtime, entry: Entry) -> Result<Info> {
    let monitor = entry.monitor()?;
    let monitor_alive = monitor.as_ref().is_some_and(MonitorRecord::alive);
    // The exit record belongs to the current run unless the monitor has
    // restarted the container since.
    let exit = entry
        .exit()?
        .filter(|exit| monitor.as_ref().is_none_or(|m| m.restart_count == exit.restart_count));
    let container = match runtime.store.peek(entry.id()) {
        Ok(record) => Some((record.live_status(), record.pid)),
        Err(runtime::Error::NotFound(_)) => None,
        Err(err) => return Err(Error::Runtime(err)),
    };
    use runtime::state::Status as Runtime;
    let (status, pid) = match (container, monitor_alive) {
        (Some((Runtime::Running, pid)), true) => (Status::Running, pid),
        (Some((Runtime::Paused, pid)), true) => (Status::Paused, pid),
        (Some((Runtime::Creating | Runtime::Created, _)), true) => (Status::Starting, 0),
        (Some((Runtime::Running | Runtime::Paused | Runtime::Created | Runtime::Creating, pid)), false) => {
            (Status::Unmonitored, pid)
        }
        (_, true) => match &exit {
            Some(exit) if !entry.stop_requested() && entry.record.restart.should_restart(exit.exit_code, exit.restart_count) => {
                (Status::Restarting, 0)
            }
            Some(_) => (Status::Exited, 0),
            None => (Status::Starting, 0),
        },
        (_, false) => match (&exit, &monitor) {
            (Some(_), _) => (Status::Exited, 0),
            (None, None) => (Status::Created, 0),
            (None, Some(_)) => (Status::Lost, 0),
        },
    };
    Ok(Info {
        entry,
        status,
        pid,
        monitor,
        monitor_alive,
        exit,
    })
}
