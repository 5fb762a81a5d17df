//! `process.terminal`: the pty master sent over `--console-socket`.

use std::os::unix::net::UnixListener;

use conman_integration::{
    accept_console, read_pty_until_closed, receive_pty_master, Bundle, Runtime, Spawned, COMMAND_TIMEOUT,
};

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
    let stream = accept_console(&listener, &mut create);
    let master = receive_pty_master(&stream);
    let created = create.wait(COMMAND_TIMEOUT);
    assert_eq!(created.code, 0, "create: {created}");
    rt.ok(&["start", &id]);
    let output = read_pty_until_closed(&master, COMMAND_TIMEOUT);

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
