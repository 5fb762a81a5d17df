//! Containers made from an existing OCI bundle (`--bundle DIR`).
//!
//! The bundle is read once, when the container is created, and never
//! written to. The container's `config.json` is a copy in its own
//! directory, with conman's overrides applied. Its root is an overlay on
//! the bundle's root filesystem, as with `--rootfs DIR`.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::spec::Settings;

/// A bundle read and checked by [`open`].
#[derive(Clone, Debug)]
pub struct SourceBundle {
    /// The bundle directory, canonical.
    pub dir: PathBuf,
    /// The bundle's `config.json`, as JSON, so that fields this version of
    /// the runtime's parser does not model survive the copy.
    pub config: Value,
    /// `root.path` resolved against the bundle directory, canonical.
    pub rootfs: PathBuf,
}

/// Reads the bundle at `dir` and checks its configuration with the
/// runtime's own rules, so that a bad bundle fails before the container
/// has a record.
pub fn open(dir: &Path) -> Result<SourceBundle> {
    let canonical =
        fs::canonicalize(dir).map_err(|err| Error::InvalidArgument(format!("--bundle {}: {err}", dir.display())))?;
    if !canonical.is_dir() {
        return Err(Error::InvalidArgument(format!("--bundle {} is not a directory", dir.display())));
    }
    let config_path = canonical.join("config.json");
    let spec = runtime::spec::load(&config_path)?;
    runtime::spec::check_supported(&spec)?;
    let rootfs = runtime::spec::rootfs_path(&spec, &canonical)?;
    let rootfs = fs::canonicalize(&rootfs).map_err(|err| Error::io(format!("root.path {}", rootfs.display()), err))?;
    let text = fs::read_to_string(&config_path).map_err(|err| Error::io(format!("read {}", config_path.display()), err))?;
    let config: Value = serde_json::from_str(&text)
        .map_err(|err| Error::InvalidArgument(format!("{}: invalid JSON: {err}", config_path.display())))?;
    Ok(SourceBundle { dir: canonical, config, rootfs })
}

/// Returns the bundle's `process.args`.
pub fn args(bundle: &SourceBundle) -> Vec<String> {
    bundle.config["process"]["args"]
        .as_array()
        .map(|args| args.iter().filter_map(|arg| arg.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Returns the names of the flags in `settings` that `--bundle` rejects:
/// the bundle's `config.json` sets the container's mounts, resources,
/// network and security, and conman does not merge its own defaults or
/// flags into those.
pub fn conflicting_flags(settings: &Settings) -> Vec<&'static str> {
    let rejected = [
        (!settings.volumes.is_empty(), "--volume"),
        (!settings.tmpfs.is_empty(), "--tmpfs"),
        (settings.read_only, "--read-only"),
        (settings.memory.is_some(), "--memory"),
        (settings.pids_limit.is_some(), "--pids-limit"),
        (settings.cpus.is_some(), "--cpus"),
        (!settings.cap_add.is_empty(), "--cap-add"),
        (!settings.cap_drop.is_empty(), "--cap-drop"),
        (settings.host_network, "--network"),
        (!matches!(settings.seccomp, crate::spec::SeccompSetting::Default), "--security-opt"),
        (settings.privileged, "--privileged"),
    ];
    rejected.into_iter().filter(|(set, _)| *set).map(|(_, flag)| flag).collect()
}

/// Builds the container's configuration from the bundle's: the root is
/// `rootfs`, relative bind mount sources are made absolute against the
/// bundle, and the command, environment, working directory, user and
/// hostname follow conman's flags where they were given.
/// `process.terminal` is set later, from `-t`.
pub fn build(bundle: &SourceBundle, rootfs: &Path, args: &[String], settings: &Settings) -> Result<Value> {
    let mut config = bundle.config.clone();
    config["root"]["path"] = json!(rootfs);
    if let Some(mounts) = config["mounts"].as_array_mut() {
        for mount in mounts {
            absolute_bind_source(mount, &bundle.dir);
        }
    }

    let process = &mut config["process"];
    process["args"] = json!(args);
    process["terminal"] = json!(false);
    if let Some(object) = process.as_object_mut() {
        object.remove("consoleSize");
    }
    if !settings.env.is_empty() {
        let mut env: Vec<Value> = process["env"].as_array().cloned().unwrap_or_default();
        for entry in &settings.env {
            let key = entry.split('=').next().unwrap_or("");
            env.retain(|e| e.as_str().and_then(|e| e.split('=').next()) != Some(key));
            env.push(json!(entry));
        }
        process["env"] = json!(env);
    }
    if let Some(workdir) = &settings.workdir {
        process["cwd"] = json!(workdir);
    }
    if let Some(user) = &settings.user {
        let (uid, gid) = crate::spec::parse_user(user)?;
        process["user"] = json!({ "uid": uid, "gid": gid });
    }
    if let Some(hostname) = &settings.hostname {
        config["hostname"] = json!(hostname);
    }
    Ok(config)
}

/// Makes the source of a bind mount absolute: the runtime resolves a
/// relative one against the bundle directory, and the container's
/// bundle directory is its directory in the store.
fn absolute_bind_source(mount: &mut Value, bundle: &Path) {
    let bind_option = mount["options"]
        .as_array()
        .is_some_and(|options| options.iter().any(|o| o == "bind" || o == "rbind"));
    if mount["type"] != "bind" && !bind_option {
        return;
    }
    if let Some(source) = mount["source"].as_str().filter(|s| !s.starts_with('/')) {
        mount["source"] = json!(bundle.join(source));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(config: Value) -> SourceBundle {
        SourceBundle { dir: PathBuf::from("/bundles/web"), config, rootfs: PathBuf::from("/bundles/web/rootfs") }
    }

    #[test]
    fn build_applies_overrides() {
        let source = bundle(json!({
            "ociVersion": "1.2.0",
            "root": { "path": "rootfs", "readonly": true },
            "process": {
                "terminal": true,
                "consoleSize": { "height": 10, "width": 20 },
                "cwd": "/",
                "args": ["sh"],
                "env": ["PATH=/bin", "A=1"],
                "user": { "uid": 0, "gid": 0 }
            },
            "hostname": "bundle",
            "mounts": [
                { "destination": "/data", "type": "bind", "source": "data", "options": ["rbind"] },
                { "destination": "/opt", "source": "/srv/opt", "options": ["bind"] },
                { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs" }
            ],
            "x-custom": 1
        }));
        let settings = Settings {
            env: vec!["A=2".into(), "B=3".into()],
            workdir: Some("/work".into()),
            user: Some("1000:100".into()),
            hostname: Some("web".into()),
            ..Settings::default()
        };

        let config = build(&source, Path::new("/store/c/merged"), &["echo".into(), "hi".into()], &settings).unwrap();

        assert_eq!(config["root"], json!({ "path": "/store/c/merged", "readonly": true }));
        assert_eq!(config["process"]["args"], json!(["echo", "hi"]));
        assert_eq!(config["process"]["terminal"], json!(false));
        assert!(config["process"]["consoleSize"].is_null());
        assert_eq!(config["process"]["env"], json!(["PATH=/bin", "A=2", "B=3"]));
        assert_eq!(config["process"]["cwd"], json!("/work"));
        assert_eq!(config["process"]["user"], json!({ "uid": 1000, "gid": 100 }));
        assert_eq!(config["hostname"], json!("web"));
        assert_eq!(config["mounts"][0]["source"], json!("/bundles/web/data"));
        assert_eq!(config["mounts"][1]["source"], json!("/srv/opt"));
        assert_eq!(config["mounts"][2]["source"], json!("tmpfs"));
        assert_eq!(config["x-custom"], json!(1));
    }

    #[test]
    fn conflicts_name_flags() {
        let settings = Settings { memory: Some(1 << 20), volumes: vec!["/a:/b".into()], ..Settings::default() };

        assert_eq!(conflicting_flags(&settings), vec!["--volume", "--memory"]);
        assert!(conflicting_flags(&Settings::default()).is_empty());
    }
}
