//! The sd_notify proxy for containers run as systemd `Type=notify` units.
//!
//! When the runtime runs with NOTIFY_SOCKET set, the container's program
//! must be able to report READY=1, but it cannot reach the host's socket.
//! `create` bind-mounts a directory of the container's state at
//! /run/notify and sets NOTIFY_SOCKET=/run/notify/notify.sock for the
//! program. `start` binds a datagram socket there, releases the program,
//! forwards what it sends to the host's NOTIFY_SOCKET until READY=1, then
//! adds MAINPID with the program's host pid, and returns.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
use oci_spec::runtime::{MountBuilder, Spec};

use crate::error::{Context, Error, Result};

/// The directory in the container's state that the socket is in.
pub const DIR: &str = "notify";
/// The path of that directory inside the container.
const CONTAINER_DIR: &str = "/run/notify";
const SOCKET: &str = "notify.sock";

/// Returns the host's NOTIFY_SOCKET, if the runtime was given one.
pub fn host_socket() -> Option<String> {
    std::env::var("NOTIFY_SOCKET").ok().filter(|s| !s.is_empty())
}

/// Adds the socket directory's mount and NOTIFY_SOCKET to the spec.
pub fn add_to_spec(spec: &mut Spec, state_dir: &Path) -> Result<()> {
    let mount = MountBuilder::default()
        .destination(CONTAINER_DIR)
        .typ("bind")
        .source(state_dir.join(DIR))
        .options(vec!["bind".to_owned(), "nosuid".to_owned(), "noexec".to_owned(), "nodev".to_owned()])
        .build()
        .map_err(|err| Error::InvalidConfig(format!("the notify socket mount: {err}")))?;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(mount);
    spec.set_mounts(Some(mounts));
    if let Some(process) = spec.process_mut() {
        let mut env = process.env().clone().unwrap_or_default();
        env.retain(|e| !e.starts_with("NOTIFY_SOCKET="));
        env.push(format!("NOTIFY_SOCKET={CONTAINER_DIR}/{SOCKET}"));
        process.set_env(Some(env));
    }
    Ok(())
}

/// The socket that `start` listens on, bound before the program runs.
pub struct Proxy {
    socket: std::os::fd::OwnedFd,
    host: String,
}

/// Binds the container's socket in `state_dir`, when the container was
/// created with the proxy and the runtime has a NOTIFY_SOCKET now.
pub fn bind(state_dir: &Path) -> Result<Option<Proxy>> {
    let dir: PathBuf = state_dir.join(DIR);
    let (Some(host), true) = (host_socket(), dir.is_dir()) else {
        return Ok(None);
    };
    let path = dir.join(SOCKET);
    let _ = std::fs::remove_file(&path);
    let socket = socket::socket(AddressFamily::Unix, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .context(|| "create the notify socket".to_owned())?;
    let address = UnixAddr::new(&path).context(|| format!("notify socket path {}", path.display()))?;
    socket::bind(socket.as_raw_fd(), &address).context(|| format!("bind {}", path.display()))?;
    // The program may run as any user of the container.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .context(|| format!("chmod {}", path.display()))?;
    Ok(Some(Proxy { socket, host }))
}

impl Proxy {
    /// Forwards the program's messages to the host's socket until one has
    /// READY=1, then sends MAINPID. Fails when `alive` reports that the
    /// program has exited before it was ready.
    pub fn forward_until_ready(&self, pid: i32, alive: impl Fn() -> bool) -> Result<()> {
        let host = self.host_address()?;
        let mut buf = vec![0u8; 4096];
        loop {
            let mut poll = libc::pollfd { fd: self.socket.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut poll, 1, Duration::from_millis(100).as_millis() as i32) };
            if ready == 0 {
                if !alive() {
                    return Err(Error::Init(format!(
                        "the container's process {pid} exited before it sent READY=1 to NOTIFY_SOCKET"
                    )));
                }
                continue;
            }
            let n = match socket::recv(self.socket.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => continue,
                Err(errno) => return Err(Error::errno("read the notify socket", errno)),
            };
            let message = &buf[..n];
            self.send(&host, message)?;
            if message.split(|&b| b == b'\n').any(|line| line == b"READY=1") {
                return self.send(&host, format!("MAINPID={pid}").as_bytes());
            }
        }
    }

    fn host_address(&self) -> Result<UnixAddr> {
        let address = match self.host.strip_prefix('@') {
            Some(name) => UnixAddr::new_abstract(name.as_bytes()),
            None => UnixAddr::new(Path::new(&self.host)),
        };
        address.context(|| format!("NOTIFY_SOCKET \"{}\"", self.host))
    }

    fn send(&self, host: &UnixAddr, message: &[u8]) -> Result<()> {
        socket::sendto(self.socket.as_raw_fd(), message, host, MsgFlags::MSG_NOSIGNAL)
            .context(|| format!("forward a notification to NOTIFY_SOCKET \"{}\"", self.host))?;
        Ok(())
    }
}
