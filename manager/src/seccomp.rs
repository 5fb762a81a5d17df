//! The default seccomp profile of `conman run`: the profile that podman
//! applies, read from the containers-common file that podman reads, and
//! turned into an OCI `linux.seccomp` for the container's capabilities.

use std::path::Path;

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// Path of the profile in Debian's containers-common package, where podman reads it.
pub const DEFAULT_PROFILE: &str = "/usr/share/containers/seccomp.json";

/// Reads a seccomp profile file. A containers-common profile (with
/// `includes`/`excludes` per rule) is converted for `caps` on amd64; an OCI
/// `linux.seccomp` object is used as it is.
pub fn load(path: &Path, caps: &[String]) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|err| Error::io(format!("read seccomp profile {}", path.display()), err))?;
    let profile: Value = serde_json::from_str(&text)
        .map_err(|err| Error::InvalidArgument(format!("seccomp profile {}: invalid JSON: {err}", path.display())))?;
    Ok(to_oci(&profile, caps))
}

/// Converts a containers-common profile into an OCI `linux.seccomp`,
/// keeping the rules whose `includes` hold and whose `excludes` do not for
/// an amd64 container with capabilities `caps`.
pub fn to_oci(profile: &Value, caps: &[String]) -> Value {
    if profile["archMap"].is_null() && !has_conditions(profile) {
        // Already an OCI profile.
        return profile.clone();
    }
    let granted = |cap: &Value| cap.as_str().is_some_and(|c| caps.iter().any(|have| have == c));
    let amd64 = |arches: &Value| arches.as_array().is_some_and(|list| list.iter().any(|a| a == "amd64"));
    let keep = |rule: &Value| {
        let includes = &rule["includes"];
        let excludes = &rule["excludes"];
        let caps_included = includes["caps"].as_array().is_none_or(|list| list.iter().all(granted));
        let arch_included = includes["arches"].is_null() || amd64(&includes["arches"]);
        let caps_excluded = excludes["caps"].as_array().is_some_and(|list| list.iter().any(granted));
        caps_included && arch_included && !caps_excluded && !amd64(&excludes["arches"])
    };
    let syscalls: Vec<Value> = profile["syscalls"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .filter(|rule| keep(rule))
                .map(|rule| {
                    let mut oci = json!({ "names": rule["names"], "action": rule["action"] });
                    if let Some(args) = rule["args"].as_array().filter(|a| !a.is_empty()) {
                        oci["args"] = json!(args);
                    }
                    if !rule["errnoRet"].is_null() {
                        oci["errnoRet"] = rule["errnoRet"].clone();
                    }
                    oci
                })
                .collect()
        })
        .unwrap_or_default();
    let mut oci = json!({
        "defaultAction": profile["defaultAction"],
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls
    });
    if !profile["defaultErrnoRet"].is_null() {
        oci["defaultErrnoRet"] = profile["defaultErrnoRet"].clone();
    }
    oci
}

fn has_conditions(profile: &Value) -> bool {
    profile["syscalls"]
        .as_array()
        .is_some_and(|rules| rules.iter().any(|r| !r["includes"].is_null() || !r["excludes"].is_null() || !r["comment"].is_null()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_and_excludes() {
        let profile = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "archMap": [],
            "syscalls": [
                { "names": ["read"], "action": "SCMP_ACT_ALLOW" },
                { "names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": { "caps": ["CAP_SYS_ADMIN"] } },
                { "names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": { "arches": ["amd64"] } },
                { "names": ["s390_only"], "action": "SCMP_ACT_ALLOW", "includes": { "arches": ["s390x"] } },
                { "names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": { "caps": ["CAP_SYS_ADMIN"] } }
            ]
        });
        let names = |caps: &[&str]| -> Vec<String> {
            let caps: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
            to_oci(&profile, &caps)["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["names"][0].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(names(&[]), ["read", "arch_prctl", "clone"]);
        assert_eq!(names(&["CAP_SYS_ADMIN"]), ["read", "mount", "arch_prctl"]);
        assert_eq!(to_oci(&profile, &[])["defaultErrnoRet"], 38);
    }
}
