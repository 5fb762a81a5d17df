//! The foreground part of `run`: forwarding signals to the container's init,
//! relaying its terminal, and collecting its exit status.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::container::{exit_code, CreateOptions, Created, Runtime};
use crate::error::{Context, Error, Result};
use crate::terminal::{self, RawMode};

/// Signals that `run` does not forward: SIGCHLD reports that the init exited,
/// SIGWINCH resizes the relayed terminal, and SIGKILL/SIGSTOP cannot be
/// caught.
pub(crate) fn forwarded_set() -> SigSet {
    let mut set = SigSet::all();
    for signal in [Signal::SIGKILL, Signal::SIGSTOP] {
        set.remove(signal);
    }
    set
}

pub(crate) fn run_and_wait(
    runtime: &Runtime,
    id: &str,
    options: &CreateOptions,
    detach: bool,
    keep: bool,
    create: impl FnOnce(&Runtime, &str, &CreateOptions) -> Result<Created>,
) -> Result<i32> {
    // Signals are blocked before the clone so none is lost between start
    // and the wait loop; the init restores its own mask before execve.
    let set = forwarded_set();
    let mut old = SigSet::empty();
    if !detach {
        nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
            .context(|| "block signals".to_owned())?;
    }
    let result = (|| {
        let created = create(runtime, id, options)?;
        if let Err(err) = runtime.start(id) {
            let _ = runtime.delete(id, true);
            return Err(err);
        }
        if detach {
            return Ok(0);
        }
        let status = wait_loop(created.pid, created.pty, &set);
        if keep {
            return Ok(exit_code(status?));
        }
        let deleted = runtime.delete(id, true);
        let status = status?;
        deleted?;
        Ok(exit_code(status))
    })();
    if !detach {
        let _ = nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
    result
}

/// Waits for `pid` to exit, forwarding signals, and relaying the terminal
/// between our stdio and `pty` when there is one. Returns the wait status.
pub(crate) fn wait_loop(pid: i32, pty: Option<OwnedFd>, set: &SigSet) -> Result<i32> {
    let signals = SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC).context(|| "create signalfd".to_owned())?;
    let _raw = pty.as_ref().and_then(|_| RawMode::enable(0));
    if let Some(pty) = &pty {
        terminal::copy_size(0, pty.as_raw_fd());
    }
    let mut stdin_open = pty.is_some();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        if let Some(status) = reap(pid)? {
            if let Some(pty) = &pty {
                drain(pty, &mut buf);
            }
            return Ok(status);
        }
        // SAFETY: fd 0 stays open for the life of this loop.
        let stdin = unsafe { BorrowedFd::borrow_raw(0) };
        let mut fds = vec![PollFd::new(signals.as_fd_borrowed(), PollFlags::POLLIN)];
        if let Some(pty) = &pty {
            fds.push(PollFd::new(pty_borrow(pty), PollFlags::POLLIN));
            if stdin_open {
                fds.push(PollFd::new(stdin, PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(Error::errno("poll", errno)),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        if ready[0] {
            if let Ok(Some(info)) = signals.read_signal() {
                let signal = info.ssi_signo as i32;
                match signal {
                    libc::SIGCHLD => {}
                    libc::SIGWINCH => {
                        if let Some(pty) = &pty {
                            terminal::copy_size(0, pty.as_raw_fd());
                        }
                    }
                    _ => {
                        // SAFETY: kill has no memory effects.
                        unsafe { libc::kill(pid, signal) };
                    }
                }
            }
        }
        if let Some(pty) = &pty {
            if ready.get(1).copied().unwrap_or(false) {
                match nix::unistd::read(pty.as_raw_fd(), &mut buf) {
                    Ok(n) if n > 0 => write_all(1, &buf[..n]),
                    // EIO: the last slave closed; the exit follows.
                    _ => {}
                }
            }
            if stdin_open && ready.get(2).copied().unwrap_or(false) {
                match nix::unistd::read(0, &mut buf) {
                    Ok(n) if n > 0 => write_all(pty.as_raw_fd(), &buf[..n]),
                    _ => stdin_open = false,
                }
            }
        }
    }
}

fn pty_borrow(pty: &OwnedFd) -> BorrowedFd<'_> {
    use std::os::fd::AsFd;
    pty.as_fd()
}

trait SignalFdExt {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_>;
}

impl SignalFdExt for SignalFd {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.as_fd()
    }
}

/// Returns the wait status if `pid` has exited, reaping other children.
fn reap(pid: i32) -> Result<Option<i32>> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out-parameter.
        let ret = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if ret == pid {
            return Ok(Some(status));
        }
        if ret == 0 {
            return Ok(None);
        }
        if ret < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(Error::io(format!("wait for pid {pid}"), err));
        }
    }
}

/// Copies what is left in the pty to stdout after the process exited.
fn drain(pty: &OwnedFd, buf: &mut [u8]) {
    let _ = nix::fcntl::fcntl(pty.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
    while let Ok(n) = nix::unistd::read(pty.as_raw_fd(), buf) {
        if n == 0 {
            break;
        }
        write_all(1, &buf[..n]);
    }
}

fn write_all(fd: i32, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writing from a valid buffer.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        data = &data[n as usize..];
    }
}
