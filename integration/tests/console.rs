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

/// Runs `args` (a `create` or an `exec`) with a console socket and returns
/// what the process wrote on its terminal.
fn terminal_output(rt: &Runtime, args: &[&str]) -> String {
    let socket_path = rt.tempdir("console").join("console.sock");
    let listener = UnixListener::bind(&socket_path).expect("bind the console socket");
    let mut full: Vec<&str> = args.to_vec();
    let socket = socket_path.to_str().unwrap();
    full.splice(1..1, ["--console-socket", socket]);
    let mut command = Spawned::new(rt.command(&full));
    let stream = accept_console(&listener, &mut command);
    let master = receive_pty_master(&stream);
    if args[0] == "create" {
        let created = command.wait(COMMAND_TIMEOUT);
        assert_eq!(created.code, 0, "create: {created}");
        rt.ok(&["start", args[args.len() - 1]]);
    }
    read_pty_until_closed(&master, COMMAND_TIMEOUT)
}

/// The pty belongs to the process's user, with the group devpts gave it
/// (`gid=5` in the default spec), for the init and for `exec -t`.
#[test]
fn terminal_owned_by_process_user() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", "stat -c owner=%u:%g $(tty)"]);
    bundle.edit(|config| {
        config["process"]["terminal"] = true.into();
        config["process"]["user"] = serde_json::json!({ "uid": 1000, "gid": 100 });
    });
    let id = rt.id("tty-owner");

    let init = terminal_output(&rt, &["create", "--bundle", bundle.path_str(), &id]);

    assert!(init.contains("owner=1000:5"), "init: {init:?}");

    let mut sleeper = Bundle::with_args(&rt, &["sleep", "60"]);
    sleeper.edit(|config| config["process"]["user"] = serde_json::json!({ "uid": 1000, "gid": 100 }));
    let sleeper_id = rt.id("tty-owner-exec");
    rt.ok(&["run", "--detach", "--bundle", sleeper.path_str(), &sleeper_id]);

    let exec = terminal_output(&rt, &["exec", "-t", "--user", "1001:100", &sleeper_id, "sh", "-c", "stat -c owner=%u:%g $(tty)"]);

    assert!(exec.contains("owner=1001:5"), "exec: {exec:?}");
}
