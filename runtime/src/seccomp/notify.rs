//! SCMP_ACT_NOTIFY: handing the seccomp user notification fd to the agent
//! at `linux.seccomp.listenerPath`.
//!
//! seccompiler has no notify action, so the filter is loaded with
//! SECCOMP_FILTER_FLAG_NEW_LISTENER by [`super::load`], and the fd takes two
//! hops. First the container process sends it to the runtime over the sync
//! socket (message [`MSG_SECCOMP`] with SCM_RIGHTS), right after loading
//! the filter. Then the runtime connects to the agent's socket and sends the
//! container process state as JSON together with the fd, in the format of
//! the OCI runtime spec ("seccomp state"). Until the agent reads the fd,
//! a notified syscall in the container waits.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::Serialize;

use crate::error::{Context, Error, Result};
use crate::state::OciState;

/// Sync socket message that carries the listener fd.
pub const MSG_SECCOMP: u8 = b'S';

/// The agent that receives the listener fd.
#[derive(Clone, Debug)]
pub struct Listener {
    pub path: PathBuf,
    /// `linux.seccomp.listenerMetadata`, passed to the agent as it is.
    pub metadata: String,
}

/// Sends the listener fd to the runtime (container side).
pub fn send_listener(sync: &OwnedFd, listener: &OwnedFd) -> Result<()> {
    let iov = [IoSlice::new(&[MSG_SECCOMP])];
    let fds = [listener.as_raw_fd()];
    let control = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(sync.as_raw_fd(), &iov, &control, MsgFlags::MSG_NOSIGNAL, None)
        .context(|| "send the seccomp listener to the runtime".to_owned())?;
    Ok(())
}

/// Reads one message from the sync socket into `buf`, with the fd that came
/// with it, if any (runtime side). Returns the message length, 0 at end of
/// file.
pub fn recv_message(sync: &OwnedFd, buf: &mut [u8]) -> Result<(usize, Option<OwnedFd>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let message = loop {
        match recvmsg::<()>(sync.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(message) => break message,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(Error::errno("read from the sync socket", errno)),
        }
    };
    let mut fd = None;
    for cmsg in message.cmsgs().context(|| "read a control message from the sync socket".to_owned())? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for raw in fds {
                // SAFETY: the kernel installed these descriptors for us.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                fd.get_or_insert(owned);
            }
        }
    }
    Ok((message.bytes, fd))
}

/// The container process state that the agent receives.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProcessState<'a> {
    oci_version: &'a str,
    fds: [&'static str; 1],
    pid: i32,
    metadata: &'a str,
    state: &'a OciState,
}

/// Connects to the agent and sends it the process state and the listener
/// fd (runtime side).
pub fn forward(listener: &Listener, fd: &OwnedFd, pid: i32, state: &OciState) -> Result<()> {
    let stream = std::os::unix::net::UnixStream::connect(&listener.path).context(|| {
        format!("connect to the seccomp agent at \"linux.seccomp.listenerPath\" {}", listener.path.display())
    })?;
    let message = ProcessState {
        oci_version: crate::state::OCI_VERSION,
        fds: ["seccompFd"],
        pid,
        metadata: &listener.metadata,
        state,
    };
    let json = serde_json::to_vec(&message).expect("the process state serialises");
    let iov = [IoSlice::new(&json)];
    let fds = [fd.as_raw_fd()];
    let control = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(stream.as_raw_fd(), &iov, &control, MsgFlags::MSG_NOSIGNAL, None)
        .context(|| format!("send the seccomp listener to the agent at {}", listener.path.display()))?;
    tracing::debug!(pid, agent = %listener.path.display(), "seccomp listener sent to the agent");
    Ok(())
}
