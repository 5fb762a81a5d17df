//! `process.terminal`: the pty master sent over `--console-socket`.

use std::io::{ErrorKind, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread::sleep;
use std::time::{Duration, Instant};

use conman_integration::{Bundle, Runtime, Spawned, COMMAND_TIMEOUT};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// Accepts one connection on `listener`, failing early if `create` exits
/// without connecting.
fn accept_from(listener: &UnixListener, create: &mut Spawned) -> UnixStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                return stream;
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => {}
            Err(err) => panic!("accept on the console socket: {err}"),
        }
        if let Some(code) = create.try_wait() {
            panic!("create exited without connecting: {}", create.read_output(code));
        }
        assert!(Instant::now() < deadline, "create never connected to the console socket");
        sleep(Duration::from_millis(10));
    }
}

/// Receives the one descriptor that the runtime sends with SCM_RIGHTS.
fn receive_fd(stream: &UnixStream) -> OwnedFd {
    stream.set_read_timeout(Some(COMMAND_TIMEOUT)).unwrap();
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .expect("recvmsg on the console socket");
    for cmsg in msg.cmsgs().expect("read control messages") {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel installed this descriptor for us.
                return unsafe { OwnedFd::from_raw_fd(fd) };
            }
        }
    }
    panic!("no descriptor arrived on the console socket");
}

/// Reads the pty master until the container closes its side (EIO) or the
/// timeout passes.
fn read_until_closed(master: &OwnedFd, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut output = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let mut fds = [libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, 100) };
        if ready <= 0 {
            continue;
        }
        match nix::unistd::read(master.as_raw_fd(), &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => output.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&output).into_owned()
}

#[test]
fn console_socket_gets_pty() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", "tty; echo ok"]);
    bundle.edit(|config| config["process"]["terminal"] = true.into());
    let socket_path = rt.tempdir("console").join("console.sock");
    let listener = UnixListener::bind(&socket_path).expect("bind the console socket");
    let id = rt.id("console");

    let mut create = Spawned::new(rt.command(&[
        "create",
        "--bundle",
        bundle.path_str(),
        "--console-socket",
        socket_path.to_str().unwrap(),
        &id,
    ]));
    let stream = accept_from(&listener, &mut create);
    let master = receive_fd(&stream);
    let created = create.wait(COMMAND_TIMEOUT);
    assert_eq!(created.code, 0, "create: {created}");
    rt.ok(&["start", &id]);
    let output = read_until_closed(&master, COMMAND_TIMEOUT);

    assert!(
        output.contains("/dev/console") || output.contains("/dev/pts/0"),
        "tty printed no terminal: {output:?}"
    );
    assert!(output.contains("ok"), "{output:?}");
    assert_eq!(rt.wait_for_status(&id, "stopped"), "stopped");
}

#[test]
fn terminal_needs_console_socket() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.edit(|config| config["process"]["terminal"] = true.into());
    let id = rt.id("no-console");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("--console-socket"), "{out}");
    assert!(!rt.container_dir(&id).exists(), "state directory left behind");
}
