//! Loading, checking and generating `config.json`.
//!
//! Parsing is strict: a field of the wrong type is reported with its JSON
//! path, line and column, and a field that the OCI types do not know is an
//! error rather than silently dropped. After parsing, [`check_supported`]
//! rejects every field this runtime does not apply yet, naming the field, so
//! that no part of a configuration is accepted and then ignored.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// Reads and parses `config.json` from `path`.
pub fn load(path: &Path) -> Result<Spec> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(Error::Config {
                path: path.to_owned(),
                message: "file not found (is --bundle the directory that holds config.json?)".into(),
            })
        }
        Err(err) if err.kind() == io::ErrorKind::NotADirectory => {
            return Err(Error::Config {
                path: path.to_owned(),
                message: "a component of the path is not a directory (is --bundle the directory that holds config.json?)".into(),
            })
        }
        Err(err) => return Err(Error::io(format!("read {}", path.display()), err)),
    };
    parse(&text).map_err(|message| Error::Config {
        path: path.to_owned(),
        message,
    })
}

/// Parses configuration text, returning a message with the JSON path, line and
/// column of the first problem.
pub fn parse(text: &str) -> std::result::Result<Spec, String> {
    let mut unknown: Vec<String> = Vec::new();
    let spec = {
        let mut json = serde_json::Deserializer::from_str(text);
        let mut record_unknown = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
        let tracked = serde_ignored::Deserializer::new(&mut json, &mut record_unknown);
        let spec: Spec = serde_path_to_error::deserialize(tracked).map_err(|err| {
            let field = clean_path(&err.path().to_string());
            let inner = err.into_inner();
            let syntax = matches!(inner.classify(), serde_json::error::Category::Syntax | serde_json::error::Category::Eof);
            if syntax || field.is_empty() {
                format!("invalid JSON: {inner}")
            } else {
                format!("invalid value for \"{field}\": {inner}")
            }
        })?;
        json.end().map_err(|err| format!("invalid JSON: {err}"))?;
        spec
    };
    if let Some(field) = unknown.first().map(|f| clean_path(f)) {
        return Err(format!(
            "unknown field \"{field}\" (not part of the OCI runtime spec that this runtime implements)"
        ));
    }
    Ok(spec)
}

/// Parses `config.json` bytes and checks them as `create` does, short of
/// the checks that read the host (namespace paths, security modules): the
/// fields, each mount's options, the cgroup path in both forms and the
/// seccomp profile. The fuzz target in fuzz/ and the test `spec_fuzz` feed
/// it arbitrary bytes, and it must return an error, never panic.
pub fn validate(bytes: &[u8]) -> Result<Spec> {
    let invalid = |message: String| Error::Config {
        path: PathBuf::from("config.json"),
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|err| invalid(format!("invalid UTF-8: {err}")))?;
    let spec = parse(text).map_err(invalid)?;
    check_supported(&spec)?;
    for mount in spec.mounts().iter().flatten() {
        crate::mounts::parse_options(mount)?;
    }
    let linux = spec.linux().as_ref().expect("checked by check_supported");
    crate::cgroups::container_path(linux.cgroups_path().as_deref(), "fuzz")?;
    let systemd_path = linux.cgroups_path().as_deref().map(|p| p.to_string_lossy().into_owned());
    // A cgroupsPath is valid in one form or the other, depending on
    // --systemd-cgroup, so only the parsing runs here, not the verdict.
    let _ = crate::cgroups::systemd::container_path(systemd_path.as_deref().unwrap_or(""), "fuzz");
    if let Some(seccomp) = linux.seccomp() {
        crate::seccomp::compile(seccomp)?;
    }
    Ok(spec)
}

/// Removes the `?` segments that the path trackers print for positions they
/// cannot name (the inside of an `Option`), and the lone `.` of the root.
fn clean_path(path: &str) -> String {
    path.split('.')
        .filter(|segment| !segment.is_empty() && *segment != "?")
        .collect::<Vec<_>>()
        .join(".")
}

/// Resolves `root.path` against the bundle directory.
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("\"root\" is missing".into()))?;
    let path = root.path();
    if path.as_os_str().is_empty() {
        return Err(Error::InvalidConfig("\"root.path\" is empty".into()));
    }
    let full = if path.is_absolute() {
        path.clone()
    } else {
        bundle.join(path)
    };
    match fs::metadata(&full) {
        Ok(meta) if meta.is_dir() => Ok(full),
        Ok(_) => Err(Error::InvalidConfig(format!(
            "root.path \"{}\" is not a directory",
            full.display()
        ))),
        Err(err) => Err(Error::io(
            format!("root.path \"{}\"", full.display()),
            err,
        )),
    }
}

fn unsupported(field: &str) -> Error {
    Error::InvalidConfig(format!(
        "\"{field}\" is set, but this runtime does not support it yet"
    ))
}

/// Rejects every configuration field that this runtime does not apply, and
/// values that are invalid in themselves.
pub fn check_supported(spec: &Spec) -> Result<()> {
    if !spec.version().starts_with("1.") {
        return Err(Error::InvalidConfig(format!(
            "unsupported ociVersion \"{}\": this runtime implements the 1.x runtime spec",
            spec.version()
        )));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("\"process\" is missing".into()))?;
    match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => {
            return Err(Error::InvalidConfig(
                "\"process.args\" is missing or empty".into(),
            ))
        }
    }
    if !process.cwd().is_absolute() {
        return Err(Error::InvalidConfig(format!(
            "\"process.cwd\" must be an absolute path, got \"{}\"",
            process.cwd().display()
        )));
    }
    if process.command_line().is_some() {
        return Err(unsupported("process.commandLine"));
    }
    if process.user().username().is_some() {
        return Err(unsupported("process.user.username"));
    }
    if let Some(affinity) = process.exec_cpu_affinity() {
        for (field, list) in [
            ("process.execCPUAffinity.initial", affinity.initial()),
            ("process.execCPUAffinity.final", affinity.cpu_affinity_final()),
        ] {
            if let Some(list) = list {
                crate::attributes::parse_list(list, field)?;
            }
        }
    }
    if let Some(env) = process.env() {
        for entry in env {
            if !entry.contains('=') {
                return Err(Error::InvalidConfig(format!(
                    "\"process.env\" entry \"{entry}\" is not of the form KEY=VALUE"
                )));
            }
        }
    }

    for kind in [
        crate::hooks::Kind::Prestart,
        crate::hooks::Kind::CreateRuntime,
        crate::hooks::Kind::CreateContainer,
        crate::hooks::Kind::StartContainer,
        crate::hooks::Kind::Poststart,
        crate::hooks::Kind::Poststop,
    ] {
        for hook in crate::hooks::of(spec, kind) {
            if !hook.path().is_absolute() {
                return Err(Error::InvalidConfig(format!(
                    "\"hooks.{}\" path \"{}\" is not absolute",
                    kind.name(),
                    hook.path().display()
                )));
            }
        }
    }

    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("\"linux\" is missing".into()))?;
    if linux.intel_rdt().is_some() {
        // NOTE: Intel RDT (resctrl) is not implemented. The error tells
        // whether the host could have offered it at all.
        let mounted = std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| m.contains(" - resctrl "));
        return Err(Error::InvalidConfig(if mounted {
            "\"linux.intelRdt\" is set, but this runtime does not support Intel RDT yet".into()
        } else {
            "\"linux.intelRdt\" is set, but this host has no resctrl filesystem mounted (mount -t resctrl resctrl /sys/fs/resctrl on a CPU with RDT)".into()
        }));
    }
    let new_time_namespace = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|ns| ns.typ() == LinuxNamespaceType::Time && ns.path().as_ref().is_none_or(|p| p.as_os_str().is_empty()));
    if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty()) && !new_time_namespace {
        return Err(Error::InvalidConfig(
            "\"linux.timeOffsets\" is set, but \"linux.namespaces\" has no new time namespace to apply it to".into(),
        ));
    }
    if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(unsupported("linux.netDevices"));
    }
    if let Some(namespaces) = linux.namespaces() {
        let mut seen = Vec::new();
        for ns in namespaces {
            if seen.contains(&ns.typ()) {
                return Err(Error::InvalidConfig(format!(
                    "namespace \"{}\" is listed twice in \"linux.namespaces\"",
                    ns.typ()
                )));
            }
            seen.push(ns.typ());
        }
        let has_user = seen.contains(&LinuxNamespaceType::User);
        if !has_user
            && (linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
                || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty()))
        {
            return Err(Error::InvalidConfig(
                "\"linux.uidMappings\"/\"linux.gidMappings\" are set without a user namespace".into(),
            ));
        }
    }
    if let Some(mounts) = spec.mounts() {
        for mount in mounts {
            if !mount.destination().is_absolute() {
                return Err(Error::InvalidConfig(format!(
                    "mount destination \"{}\" is not an absolute path",
                    mount.destination().display()
                )));
            }
            crate::mounts::parse_options(mount)?;
        }
    }
    if let Some(resources) = linux.resources() {
        crate::cgroups::check_resources(resources)?;
    }
    Ok(())
}

/// The configuration that `spec` writes: a busybox-style shell in fresh
/// namespaces, with the capabilities, mounts, masked paths and device rules
/// that runc's default also has.
pub const DEFAULT_CONFIG: &str = r#"{
	"ociVersion": "1.0.2",
	"process": {
		"terminal": true,
		"user": { "uid": 0, "gid": 0 },
		"args": [ "sh" ],
		"env": [
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"TERM=xterm"
		],
		"cwd": "/",
		"capabilities": {
			"bounding": [ "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE" ],
			"effective": [ "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE" ],
			"permitted": [ "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE" ]
		},
		"rlimits": [ { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 } ],
		"noNewPrivileges": true
	},
	"root": { "path": "rootfs", "readonly": true },
	"hostname": "conman",
	"mounts": [
		{ "destination": "/proc", "type": "proc", "source": "proc" },
		{ "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
		  "options": [ "nosuid", "strictatime", "mode=755", "size=65536k" ] },
		{ "destination": "/dev/pts", "type": "devpts", "source": "devpts",
		  "options": [ "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5" ] },
		{ "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
		  "options": [ "nosuid", "noexec", "nodev", "mode=1777", "size=65536k" ] },
		{ "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
		  "options": [ "nosuid", "noexec", "nodev" ] },
		{ "destination": "/sys", "type": "sysfs", "source": "sysfs",
		  "options": [ "nosuid", "noexec", "nodev", "ro" ] },
		{ "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
		  "options": [ "nosuid", "noexec", "nodev", "relatime", "ro" ] }
	],
	"linux": {
		"resources": { "devices": [ { "allow": false, "access": "rwm" } ] },
		"namespaces": [
			{ "type": "pid" }, { "type": "network" }, { "type": "ipc" },
			{ "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }
		],
		"maskedPaths": [
			"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
			"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
			"/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"
		],
		"readonlyPaths": [
			"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
		]
	}
}
"#;

/// Returns the default configuration, made rootless when `rootless` is set:
/// a user namespace mapping the caller's ids to root, no network namespace and
/// no cgroup device rules.
pub fn default_config(rootless: bool, uid: u32, gid: u32) -> serde_json::Value {
    let mut config: serde_json::Value =
        serde_json::from_str(DEFAULT_CONFIG).expect("DEFAULT_CONFIG is valid JSON");
    if rootless {
        let linux = &mut config["linux"];
        linux["resources"] = serde_json::json!({});
        linux["namespaces"] = serde_json::json!([
            { "type": "pid" }, { "type": "ipc" }, { "type": "uts" },
            { "type": "mount" }, { "type": "cgroup" }, { "type": "user" }
        ]);
        linux["uidMappings"] = serde_json::json!([{ "containerID": 0, "hostID": uid, "size": 1 }]);
        linux["gidMappings"] = serde_json::json!([{ "containerID": 0, "hostID": gid, "size": 1 }]);
        let mounts = config["mounts"].as_array_mut().expect("mounts is an array");
        mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
        for mount in mounts.iter_mut() {
            if mount["destination"] == "/sys" {
                *mount = serde_json::json!({
                    "destination": "/sys", "type": "none", "source": "/sys",
                    "options": [ "rbind", "nosuid", "noexec", "nodev", "ro" ]
                });
            }
            if let Some(options) = mount["options"].as_array_mut() {
                options.retain(|o| o != "gid=5");
            }
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_parses_and_passes_checks() {
        let spec = parse(DEFAULT_CONFIG).unwrap();
        check_supported(&spec).unwrap();
        let rootless = default_config(true, 1000, 1000).to_string();
        parse(&rootless).unwrap();
    }

    #[test]
    fn wrong_type_names_field_and_line() {
        let text = DEFAULT_CONFIG.replace(r#""uid": 0"#, r#""uid": "zero""#);
        let message = parse(&text).unwrap_err();
        assert!(message.contains("process.user.uid"), "{message}");
        assert!(message.contains("line 5"), "{message}");
    }

    #[test]
    fn unknown_nested_field_has_clean_path() {
        let text = DEFAULT_CONFIG.replace(r#""cwd": "/","#, r#""cwd": "/", "bogus": 1,"#);
        let message = parse(&text).unwrap_err();
        assert!(message.contains("unknown field \"process.bogus\""), "{message}");
    }

    #[test]
    fn truncated_json_is_a_syntax_error() {
        let message = parse(r#"{"ociVersion": "1.0.2","#).unwrap_err();
        assert!(message.starts_with("invalid JSON: "), "{message}");
        assert!(message.contains("line 1"), "{message}");
    }

    #[test]
    fn unknown_field_is_rejected() {
        let text = DEFAULT_CONFIG.replace(r#""hostname""#, r#""hostnme""#);
        let message = parse(&text).unwrap_err();
        assert!(message.contains("unknown field \"hostnme\""), "{message}");
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        let text = format!("{DEFAULT_CONFIG} x");
        assert!(parse(&text).unwrap_err().contains("invalid JSON"));
    }
}
