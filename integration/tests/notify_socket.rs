//! The NOTIFY_SOCKET proxy: a runtime run with NOTIFY_SOCKET (as systemd
//! starts a `Type=notify` unit) gives the container a socket of its own,
//! and `start` forwards what the program sends until READY=1, then MAINPID.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use conman_integration::{build_static_fixture, Bundle, Runtime};

/// A bundle whose program runs `script`, with the sd_notify client at
/// /bin/sd_notify.
fn notify_bundle(rt: &Runtime, script: &str) -> Bundle {
    let bundle = Bundle::with_args(rt, &["sh", "-c", script]);
    let client = build_static_fixture("sd_notify", &rt.tempdir("client"));
    std::fs::copy(&client, bundle.rootfs().join("bin/sd_notify")).expect("copy sd_notify into the rootfs");
    bundle
}

/// Runs the runtime with `args` and NOTIFY_SOCKET set to `socket`.
fn with_notify_socket(rt: &Runtime, socket: &Path, args: &[&str]) -> conman_integration::Output {
    let mut command = rt.command(args);
    command.env("NOTIFY_SOCKET", socket);
    rt.output_of(command)
}

/// Reads the datagrams that have arrived on `socket`.
fn received(socket: &UnixDatagram) -> Vec<String> {
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    messages
}

#[test]
fn start_forwards_until_ready() {
    let rt = Runtime::new();
    let host_path = rt.tempdir("host").join("notify.sock");
    let host = UnixDatagram::bind(&host_path).expect("bind the host's notify socket");
    let bundle = notify_bundle(&rt, "sleep 0.2; sd_notify STATUS=starting; sd_notify READY=1; exec sleep 1000");
    let id = rt.id("notify");

    let create = with_notify_socket(&rt, &host_path, &["create", "--bundle", bundle.path_str(), &id]);
    assert_eq!(create.code, 0, "{create}");
    let start = with_notify_socket(&rt, &host_path, &["start", &id]);
    assert_eq!(start.code, 0, "{start}");

    let pid = rt.state(&id)["pid"].as_i64().expect("pid in state");
    let messages = received(&host);
    assert_eq!(messages, ["STATUS=starting", "READY=1", &format!("MAINPID={pid}")]);
}

#[test]
fn start_fails_when_program_exits_unready() {
    let rt = Runtime::new();
    let host_path = rt.tempdir("host").join("notify.sock");
    let _host = UnixDatagram::bind(&host_path).expect("bind the host's notify socket");
    let bundle = notify_bundle(&rt, "exit 0");
    let id = rt.id("notify-exit");

    let create = with_notify_socket(&rt, &host_path, &["create", "--bundle", bundle.path_str(), &id]);
    assert_eq!(create.code, 0, "{create}");
    let start = with_notify_socket(&rt, &host_path, &["start", &id]);

    assert_ne!(start.code, 0, "{start}");
    assert!(start.stderr.contains("READY=1"), "{start}");
}

#[test]
fn program_sees_its_own_socket() {
    let rt = Runtime::new();
    let host_path = rt.tempdir("host").join("notify.sock");
    let _host = UnixDatagram::bind(&host_path).expect("bind the host's notify socket");
    let bundle = notify_bundle(&rt, "echo $NOTIFY_SOCKET; sd_notify READY=1");
    let id = rt.id("notify-env");

    let out = with_notify_socket(&rt, &host_path, &["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "/run/notify/notify.sock");
}
