//! Invalid input: each case must fail with a non-zero exit and one line on
//! stderr that names the problem, and leave nothing behind.

use std::fs;

use conman_integration::{assert_no_leftovers, Bundle, Output, Runtime};

/// Asserts the shape every failure must have: non-zero exit, one line on
/// stderr.
fn assert_one_line_failure(out: &Output) {
    assert_ne!(out.code, 0, "expected a failure: {out}");
    assert_eq!(out.stderr_line().lines().count(), 1, "stderr is not one line: {out}");
}

/// Writes `text` as the bundle's config.json.
fn write_config(bundle: &Bundle, text: &str) {
    fs::write(bundle.path().join("config.json"), text).expect("write config.json");
}

#[test]
fn missing_config_json() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&rt);
    fs::remove_file(bundle.path().join("config.json")).unwrap();
    let id = rt.id("no-config");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_one_line_failure(&out);
    assert!(out.stderr.contains("config.json"), "{out}");
    assert_no_leftovers(&rt, &id);
}

#[test]
fn bundle_is_a_file() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&rt);
    let config = bundle.path().join("config.json");
    let id = rt.id("bundle-file");

    let out = rt.output(&["create", "--bundle", config.to_str().unwrap(), &id]);

    assert_one_line_failure(&out);
    assert!(out.stderr.contains("not a directory"), "{out}");
    assert!(out.stderr.contains("is --bundle the directory"), "{out}");
    assert_no_leftovers(&rt, &id);
}

#[test]
fn malformed_json() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&rt);
    // A document cut off after its first member: a syntax error, not a
    // wrong value.
    write_config(&bundle, "{\n  \"ociVersion\": \"1.0.2\",\n");
    let id = rt.id("bad-json");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_one_line_failure(&out);
    assert!(out.stderr.contains("line"), "{out}");
    assert!(out.stderr.contains("column"), "{out}");
    // A syntax error has no field to blame, and "?" is not a JSON path.
    assert!(!out.stderr.contains('?'), "message names a field \"?\": {out}");
    assert_no_leftovers(&rt, &id);
}

#[test]
fn wrong_field_type() {
    let rt = Runtime::new();
    let mut bundle = Bundle::new(&rt);
    bundle.edit(|config| config["process"]["user"]["uid"] = "zero".into());
    let id = rt.id("wrong-type");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_one_line_failure(&out);
    assert!(out.stderr.contains("process.user.uid"), "{out}");
    assert_no_leftovers(&rt, &id);
}

#[test]
fn unknown_field() {
    let rt = Runtime::new();
    let mut bundle = Bundle::new(&rt);
    bundle.edit(|config| config["process"]["bogusField"] = 1.into());
    let id = rt.id("unknown-field");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_one_line_failure(&out);
    assert!(out.stderr.contains("bogusField"), "{out}");
    assert!(out.stderr.contains("process.bogusField"), "message lacks the field's path: {out}");
    assert_no_leftovers(&rt, &id);
}

#[test]
fn missing_rootfs() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&rt);
    fs::remove_dir_all(bundle.rootfs()).unwrap();
    let id = rt.id("no-rootfs");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_one_line_failure(&out);
    assert!(out.stderr.contains(bundle.rootfs().to_str().unwrap()), "{out}");
    assert_no_leftovers(&rt, &id);
}

/// The init fails after the cgroup exists and the init was cloned, so this
/// checks the cleanup of a half-made container.
#[test]
fn missing_executable() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["no-such-program"]);
    let id = rt.id("no-exec");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_one_line_failure(&out);
    assert!(out.stderr.contains("no-such-program"), "{out}");
    assert_no_leftovers(&rt, &id);
}

#[test]
fn missing_bind_source() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    let source = rt.tempdir("gone").join("no-such-dir");
    bundle.add_mount(serde_json::json!({
        "destination": "/data", "type": "bind", "source": source, "options": ["rbind"]
    }));
    let id = rt.id("no-source");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_one_line_failure(&out);
    assert!(out.stderr.contains(source.to_str().unwrap()), "{out}");
    assert_no_leftovers(&rt, &id);
}

/// The pid file is written last, after the init reported ready, so this
/// checks the cleanup of a container that was already set up.
#[test]
fn pid_file_in_missing_dir() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["true"]);
    let pid_file = rt.tempdir("pid").join("no-such-dir").join("init.pid");
    let id = rt.id("pid-file");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), "--pid-file", pid_file.to_str().unwrap(), &id]);

    assert_one_line_failure(&out);
    assert!(out.stderr.contains(pid_file.to_str().unwrap()), "{out}");
    assert_no_leftovers(&rt, &id);
}

#[test]
fn duplicate_id() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sleep", "100"]);
    let id = rt.id("duplicate");
    rt.create(&bundle, &id);

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_one_line_failure(&out);
    assert!(out.stderr.contains("already exists"), "{out}");
    assert!(out.stderr.contains("delete --force"), "{out}");
    assert_eq!(rt.status(&id), "created", "the first container must survive");
    rt.ok(&["start", &id]);
    assert_eq!(rt.status(&id), "running");
}

#[test]
fn invalid_id() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&rt);
    let prefix = rt.id("invalid");
    let id = format!("{prefix}/b");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_one_line_failure(&out);
    assert!(out.stderr.contains(&id), "{out}");
    assert_no_leftovers(&rt, &prefix);
}

fn assert_unknown_container(command: &str) {
    let rt = Runtime::new();
    let id = rt.id(&format!("unknown-{command}"));

    let out = rt.output(&[command, &id]);

    assert_one_line_failure(&out);
    assert!(out.stderr.contains(&id), "{command}: {out}");
    assert!(out.stderr.contains("does not exist"), "{command}: {out}");
    assert_no_leftovers(&rt, &id);
}

#[test]
fn state_unknown_container() {
    assert_unknown_container("state");
}

#[test]
fn start_unknown_container() {
    assert_unknown_container("start");
}

#[test]
fn kill_unknown_container() {
    assert_unknown_container("kill");
}

#[test]
fn delete_unknown_container() {
    assert_unknown_container("delete");
}

#[test]
fn json_log_has_error() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&rt);
    fs::remove_dir_all(bundle.rootfs()).unwrap();
    let log = rt.tempdir("log").join("runtime.log");
    let id = rt.id("log-json");

    let out = rt.output(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "create",
        "--bundle",
        bundle.path_str(),
        &id,
    ]);

    assert_ne!(out.code, 0, "{out}");
    let text = fs::read_to_string(&log).unwrap_or_else(|err| panic!("read {}: {err}", log.display()));
    let errors: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("log line is not JSON ({err}): {line}")))
        .filter(|entry: &serde_json::Value| entry["level"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "log: {text}");
    let message = errors[0]["msg"].as_str().unwrap_or_default();
    assert!(message.contains(bundle.rootfs().to_str().unwrap()), "log: {text}");
}

#[test]
fn text_log_has_error() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&rt);
    fs::remove_dir_all(bundle.rootfs()).unwrap();
    let log = rt.tempdir("log").join("runtime.log");
    let id = rt.id("log-text");

    let out = rt.output(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "text",
        "create",
        "--bundle",
        bundle.path_str(),
        &id,
    ]);

    assert_ne!(out.code, 0, "{out}");
    let text = fs::read_to_string(&log).unwrap_or_else(|err| panic!("read {}: {err}", log.display()));
    let line = text
        .lines()
        .find(|line| line.contains("level=error msg="))
        .unwrap_or_else(|| panic!("no error line in the log: {text}"));
    assert!(line.contains(bundle.rootfs().to_str().unwrap()), "log: {text}");
}
