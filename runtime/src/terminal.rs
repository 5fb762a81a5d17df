//! Pseudo-terminals and the console socket.
//!
//! With `process.terminal`, the init opens a pty from the container's own
//! devpts instance (so the pty belongs to the container), makes the slave its
//! controlling terminal and stdio, and sends the master to the caller through
//! the `--console-socket` Unix socket with SCM_RIGHTS, as runc does.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::error::{Context, Error, Result};
use crate::sys::{fd_path, openat};

nix::ioctl_write_ptr_bad!(set_window_size, libc::TIOCSWINSZ, libc::winsize);
nix::ioctl_read_bad!(get_window_size, libc::TIOCGWINSZ, libc::winsize);

const TIOCGPTPEER: libc::c_ulong = 0x5441;

/// Opens a new pty from /dev/ptmx and returns (master, slave).
pub fn open_pty() -> Result<(OwnedFd, OwnedFd)> {
    let master = openat(libc::AT_FDCWD, Path::new("/dev/ptmx"), libc::O_RDWR | libc::O_NOCTTY, 0)
        .context(|| "open /dev/ptmx".to_owned())?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int from the pointer.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(Error::last_os("unlock the pty"));
    }
    // TIOCGPTPEER opens the slave through the master, so no path lookup can
    // be redirected to another file.
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor.
    let slave = unsafe {
        libc::ioctl(master.as_raw_fd(), TIOCGPTPEER as _, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC)
    };
    if slave < 0 {
        return Err(Error::last_os("open the pty slave"));
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok((master, unsafe { OwnedFd::from_raw_fd(slave) }))
}

/// Sets the size of the terminal behind `fd`.
pub fn resize(fd: RawFd, rows: u16, cols: u16) -> Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `size` is a valid winsize.
    unsafe { set_window_size(fd, &size) }.context(|| "set the terminal size".to_owned())?;
    Ok(())
}

/// Copies the window size of `from` to `to`.
pub fn copy_size(from: RawFd, to: RawFd) {
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: `size` is a valid out-parameter.
    if unsafe { get_window_size(from, &mut size) }.is_ok() {
        // SAFETY: `size` is a valid winsize.
        let _ = unsafe { set_window_size(to, &size) };
    }
}

/// Makes `slave` the controlling terminal and the stdio of this process.
/// Makes the process's user the owner of the pty slave, so that a process
/// that is not root can use its own terminal (reopen it, change its mode).
/// The group stays the one devpts gave it (`gid=5` in the default spec).
/// A uid that the user namespace does not map (EINVAL), an owner the
/// runtime may not change there (EPERM) or a read-only /dev (EROFS) leaves
/// the owner as it is: the terminal still works for reading and writing.
pub fn give_to_user(slave: &OwnedFd, uid: u32) -> Result<()> {
    // SAFETY: fchown on an open descriptor; -1 keeps the group.
    if unsafe { libc::fchown(slave.as_raw_fd(), uid, u32::MAX) } < 0 {
        let err = std::io::Error::last_os_error();
        if matches!(err.raw_os_error(), Some(libc::EINVAL | libc::EPERM | libc::EROFS)) {
            tracing::debug!(uid, error = %err, "pty slave left with its owner");
            return Ok(());
        }
        return Err(Error::io(format!("give the pty to uid {uid}"), err));
    }
    Ok(())
}

pub fn become_session_leader(slave: &OwnedFd) -> Result<()> {
    nix::unistd::setsid().context(|| "setsid".to_owned())?;
    // SAFETY: TIOCSCTTY takes an int argument.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(Error::last_os("set the controlling terminal"));
    }
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors.
        if unsafe { libc::dup2(slave.as_raw_fd(), fd) } < 0 {
            return Err(Error::last_os(format!("dup the pty onto fd {fd}")));
        }
    }
    Ok(())
}

/// Sends `fd` over the Unix socket `socket` with SCM_RIGHTS, with the pty's
/// name as the message body.
pub fn send_fd(socket: RawFd, fd: RawFd) -> Result<()> {
    let name = std::fs::read_link(fd_path(&fd)).map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|_| "/dev/ptmx".into());
    let iov = [IoSlice::new(name.as_bytes())];
    let fds = [fd];
    let control = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(socket, &iov, &control, MsgFlags::empty(), None)
        .context(|| "send the pty master over the console socket".to_owned())?;
    Ok(())
}

/// Receives one descriptor sent with [`send_fd`].
pub fn recv_fd(socket: RawFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(socket, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .context(|| "receive the pty master".to_owned())?;
    for cmsg in msg.cmsgs().context(|| "read control message".to_owned())? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel installed this descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(Error::Init("no descriptor arrived on the console socket".into()))
}

/// Connects to the Unix socket at `path`.
pub fn connect(path: &Path) -> Result<OwnedFd> {
    let stream = std::os::unix::net::UnixStream::connect(path)
        .context(|| format!("connect to console socket {}", path.display()))?;
    Ok(OwnedFd::from(stream))
}

/// Restores a terminal's attributes when dropped.
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    /// Puts the terminal on `fd` into raw mode, if it is a terminal.
    pub fn enable(fd: RawFd) -> Option<RawMode> {
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid out-parameter.
        if unsafe { libc::tcgetattr(fd, &mut saved) } < 0 {
            return None;
        }
        let mut raw = saved;
        // SAFETY: `raw` is a valid termios.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: as above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) };
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `enable`.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}
