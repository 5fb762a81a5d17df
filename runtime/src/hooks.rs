//! Lifecycle hooks: programs run at fixed points of a container's life,
//! with the container's state as JSON on their standard input.
//!
//! | hook | run by | namespace | when |
//! |---|---|---|---|
//! | prestart, createRuntime | `create` | runtime | namespaces exist, mounts done, before pivot_root |
//! | createContainer | the init | container (mounts) | after createRuntime, before pivot_root |
//! | startContainer | the init | container | after `start`, before execve |
//! | poststart | `start` | runtime | after the process was released |
//! | poststop | `delete` | runtime | after the container stopped |
//!
//! A hook that fails before the process starts aborts `create`, or for
//! startContainer stops the container. A failing poststart or poststop hook
//! is logged and does not change the result, as the runtime spec requires.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks, Spec};

use crate::error::{Error, Result};
use crate::state::OciState;

/// The six hook kinds, named as in `config.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }

    fn select(self, hooks: &Hooks) -> Option<&Vec<Hook>> {
        #[allow(deprecated)]
        let list = match self {
            Kind::Prestart => hooks.prestart(),
            Kind::CreateRuntime => hooks.create_runtime(),
            Kind::CreateContainer => hooks.create_container(),
            Kind::StartContainer => hooks.start_container(),
            Kind::Poststart => hooks.poststart(),
            Kind::Poststop => hooks.poststop(),
        };
        list.as_ref()
    }
}

/// Returns the hooks of `kind` in `spec`, in order.
pub fn of(spec: &Spec, kind: Kind) -> Vec<Hook> {
    spec.hooks()
        .as_ref()
        .and_then(|hooks| kind.select(hooks))
        .cloned()
        .unwrap_or_default()
}

/// Runs every hook of `kind` in order, stopping at the first failure.
pub fn run_all(spec: &Spec, kind: Kind, state: &OciState) -> Result<()> {
    let hooks = of(spec, kind);
    if hooks.is_empty() {
        return Ok(());
    }
    let state_json = serde_json::to_vec(state).expect("state serialises");
    for (index, hook) in hooks.iter().enumerate() {
        run_one(hook, &state_json).map_err(|message| {
            Error::Hook(format!(
                "{} hook #{index} ({}) failed: {message}",
                kind.name(),
                hook.path().display()
            ))
        })?;
    }
    Ok(())
}

/// Runs every hook of `kind` in order, logging each failure instead of
/// returning it: for poststart and poststop, where the runtime spec says
/// that a failed hook is a warning and the remaining hooks still run.
pub fn run_all_logged(spec: &Spec, kind: Kind, state: &OciState) {
    let state_json = serde_json::to_vec(state).expect("state serialises");
    for (index, hook) in of(spec, kind).iter().enumerate() {
        if let Err(message) = run_one(hook, &state_json) {
            tracing::warn!(
                id = %state.id,
                error = %message,
                "{} hook #{index} ({}) failed",
                kind.name(),
                hook.path().display()
            );
        }
    }
}

fn run_one(hook: &Hook, state: &[u8]) -> std::result::Result<(), String> {
    let mut command = Command::new(hook.path());
    let args = hook.args().clone().unwrap_or_default();
    if let Some((arg0, rest)) = args.split_first() {
        command.arg0(arg0).args(rest);
    }
    command.env_clear();
    for entry in hook.env().iter().flatten() {
        if let Some((key, value)) = entry.split_once('=') {
            command.env(key, value);
        }
    }
    // stderr goes to an anonymous memory file rather than a pipe, so a hook
    // that writes much cannot block on a full pipe while we wait for it.
    let stderr_file = memfd("hook-stderr").map_err(|err| format!("create stderr buffer: {err}"))?;
    let stderr_copy = stderr_file.try_clone().map_err(|err| format!("create stderr buffer: {err}"))?;
    command.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::from(stderr_copy));
    let mut child = command.spawn().map_err(|err| format!("start: {err}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin closes the pipe: not an error.
        let _ = stdin.write_all(state);
    }
    let deadline = hook
        .timeout()
        .filter(|&t| t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut pause = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(err) => return Err(format!("wait: {err}")),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {}s", hook.timeout().unwrap_or(0)));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    let mut file = stderr_file;
    let _ = std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0));
    let _ = std::io::Read::read_to_string(&mut std::io::Read::take(&mut file, 4096), &mut stderr);
    let stderr = stderr.trim();
    if stderr.is_empty() {
        Err(format!("{status}"))
    } else {
        Err(format!("{status}: {stderr}"))
    }
}

fn memfd(name: &str) -> std::io::Result<std::fs::File> {
    let name = std::ffi::CString::new(name).expect("static name");
    // SAFETY: memfd_create with a valid C string returns a new descriptor.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}
