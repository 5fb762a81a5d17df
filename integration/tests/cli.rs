//! Commands that need no container: spec, features, --version.

use std::fs;

use conman_integration::Runtime;
use serde_json::Value;

#[test]
fn spec_keeps_existing_config() {
    let rt = Runtime::new();
    let dir = rt.tempdir("spec");
    let config = dir.join("config.json");
    fs::write(&config, "{\"mine\": true}\n").unwrap();

    let out = rt.output(&["spec", "--bundle", dir.to_str().unwrap()]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("already exists"), "{out}");
    assert_eq!(fs::read_to_string(&config).unwrap(), "{\"mine\": true}\n", "config.json was changed");
}

#[test]
fn spec_writes_default_config() {
    let rt = Runtime::new();
    let dir = rt.tempdir("spec");

    rt.ok(&["spec", "--bundle", dir.to_str().unwrap()]);

    let text = fs::read_to_string(dir.join("config.json")).expect("spec wrote no config.json");
    let config: Value = serde_json::from_str(&text).expect("config.json is JSON");
    assert_eq!(config["root"]["path"], "rootfs");
    assert_eq!(config["root"]["readonly"], true);
}

#[test]
fn features_prints_json() {
    let rt = Runtime::new();

    let out = rt.ok(&["features"]);

    let features: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|err| panic!("not JSON ({err}): {out}"));
    let max = features["ociVersionMax"].as_str().unwrap_or_else(|| panic!("no ociVersionMax: {out}"));
    assert!(max.starts_with("1."), "ociVersionMax is {max}");
}

#[test]
fn version_names_spec() {
    let rt = Runtime::new();

    let out = rt.ok(&["--version"]);

    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("conman-runtime version "), "{out}");
    assert!(out.stdout.lines().any(|line| line.starts_with("spec: 1.")), "{out}");
}
