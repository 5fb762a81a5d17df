//! Device rules on cgroup v2: an eBPF program of type
//! BPF_PROG_TYPE_CGROUP_DEVICE attached to the container's cgroup.
//!
//! cgroup v2 has no devices controller; the kernel calls an attached program
//! instead, with the device type, the access and the major and minor numbers
//! (`struct bpf_cgroup_dev_ctx`). The program generated here checks the
//! rules from the last to the first and returns the verdict of the first
//! that matches, which gives the same result as writing them in order to
//! the v1 `devices.allow`/`devices.deny` files: an allow rule matches a
//! request for a subset of its access, a deny rule a request for any part of
//! it. A request no rule matches is allowed, as in a fresh v1 cgroup; the
//! usual configurations start with a rule that denies everything.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::{Context, Error, Result};

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Insn {
    code: u8,
    /// Destination register in the low nibble, source in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | dst, off, imm }
}

// eBPF opcodes (linux/bpf.h, linux/bpf_common.h).
const LDX_MEM_W: u8 = 0x61;
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_X: u8 = 0xbc;
const ALU64_MOV_K: u8 = 0xb7;
const JMP_JNE_K: u8 = 0x55;
const JMP_JEQ_K: u8 = 0x15;
const JMP_EXIT: u8 = 0x95;

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACCESS_MKNOD: i32 = 1;
const ACCESS_READ: i32 = 2;
const ACCESS_WRITE: i32 = 4;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// A device rule in the numeric form the program tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    /// DEV_CHAR, DEV_BLOCK, or None for every type.
    pub kind: Option<i32>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: i32,
}

impl Rule {
    pub fn from_spec(rule: &LinuxDeviceCgroup) -> Result<Rule> {
        let kind = match rule.typ() {
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => Some(DEV_CHAR),
            Some(LinuxDeviceType::B) => Some(DEV_BLOCK),
            Some(LinuxDeviceType::A) | None => None,
            Some(LinuxDeviceType::P) => {
                return Err(Error::InvalidConfig(
                    "device rule of type \"p\" (FIFO) has no meaning for the cgroup device filter".into(),
                ))
            }
        };
        let mut access = 0;
        for c in rule.access().as_deref().filter(|a| !a.is_empty()).unwrap_or("rwm").chars() {
            access |= match c {
                'r' => ACCESS_READ,
                'w' => ACCESS_WRITE,
                'm' => ACCESS_MKNOD,
                other => {
                    return Err(Error::InvalidConfig(format!("invalid device access \"{other}\" in linux.resources.devices")))
                }
            };
        }
        let number = |n: Option<i64>| n.filter(|&n| n >= 0).map(|n| n as u32);
        Ok(Rule {
            allow: rule.allow(),
            kind,
            major: number(rule.major()),
            minor: number(rule.minor()),
            access,
        })
    }

    /// Parses a rule in the v1 file syntax, such as `c 1:3 rwm`.
    pub fn parse_v1(text: &str, allow: bool) -> Option<Rule> {
        let mut parts = text.split_whitespace();
        let kind = match parts.next()? {
            "a" => None,
            "c" => Some(DEV_CHAR),
            "b" => Some(DEV_BLOCK),
            _ => return None,
        };
        let (major, minor) = parts.next().unwrap_or("*:*").split_once(':')?;
        let number = |n: &str| if n == "*" { Some(None) } else { n.parse().ok().map(Some) };
        let mut access = 0;
        for c in parts.next().unwrap_or("rwm").chars() {
            access |= match c {
                'r' => ACCESS_READ,
                'w' => ACCESS_WRITE,
                'm' => ACCESS_MKNOD,
                _ => return None,
            };
        }
        Some(Rule { allow, kind, major: number(major)?, minor: number(minor)?, access })
    }
}

/// Generates the program for `rules`, applied in order.
fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut code = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0), // r2 = access_type
        insn(ALU32_AND_K, 2, 0, 0, 0xffff), // r2 = device type
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16), // r3 = requested access
        insn(LDX_MEM_W, 4, 1, 4, 0), // r4 = major
        insn(LDX_MEM_W, 5, 1, 8, 0), // r5 = minor
    ];
    for rule in rules.iter().rev() {
        // Each test jumps past the end of this rule's block when it fails.
        let mut block: Vec<Insn> = Vec::new();
        if let Some(kind) = rule.kind {
            block.push(insn(JMP_JNE_K, 2, 0, 0, kind));
        }
        if rule.access != ACCESS_MKNOD | ACCESS_READ | ACCESS_WRITE {
            block.push(insn(ALU32_MOV_X, 1, 3, 0, 0));
            if rule.allow {
                // Matches when no requested access lies outside the rule's.
                block.push(insn(ALU32_AND_K, 1, 0, 0, !rule.access & 7));
                block.push(insn(JMP_JNE_K, 1, 0, 0, 0));
            } else {
                // Matches when any requested access lies inside the rule's.
                block.push(insn(ALU32_AND_K, 1, 0, 0, rule.access));
                block.push(insn(JMP_JEQ_K, 1, 0, 0, 0));
            }
        }
        if let Some(major) = rule.major {
            block.push(insn(JMP_JNE_K, 4, 0, 0, major as i32));
        }
        if let Some(minor) = rule.minor {
            block.push(insn(JMP_JNE_K, 5, 0, 0, minor as i32));
        }
        block.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow)));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        let len = block.len();
        let unconditional = len == 2;
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JMP_JNE_K || ins.code == JMP_JEQ_K {
                ins.off = (len - i - 1) as i16;
            }
        }
        code.extend(block);
        // A rule that matches every request decides everything below it,
        // and the verifier rejects code that cannot be reached.
        if unconditional {
            return code;
        }
    }
    code.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
    code.push(insn(JMP_EXIT, 0, 0, 0, 0));
    code
}

/// Loads the program for `rules` into the kernel.
pub fn load(rules: &[Rule]) -> Result<OwnedFd> {
    let code = program(rules);
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 65536];
    // The first 7 fields of the BPF_PROG_LOAD variant of `union bpf_attr`;
    // the kernel zero-extends a shorter attribute.
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
    }
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: code.len() as u32,
        insns: code.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
    };
    // SAFETY: `attr` points to valid memory for the lengths it states, all
    // of which outlive the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &attr as *const ProgLoad, std::mem::size_of::<ProgLoad>()) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        let verifier = String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(0)]).trim().to_owned();
        let detail = if verifier.is_empty() { String::new() } else { format!(" (verifier: {verifier})") };
        return Err(Error::io(format!("load the cgroup device filter{detail}"), err));
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches `program` to the cgroup v2 directory `dir`.
pub fn attach(program: &OwnedFd, dir: &Path) -> Result<()> {
    let cgroup = crate::sys::openat(libc::AT_FDCWD, dir, libc::O_RDONLY | libc::O_DIRECTORY, 0)
        .context(|| format!("open cgroup {}", dir.display()))?;
    #[repr(C)]
    struct ProgAttach {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
    }
    let attr = ProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    // SAFETY: `attr` is a valid BPF_PROG_ATTACH attribute.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_ATTACH, &attr as *const ProgAttach, std::mem::size_of::<ProgAttach>()) };
    if rc < 0 {
        return Err(Error::last_os(format!("attach the device filter to cgroup {}", dir.display())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_syntax_parses() {
        let rule = Rule::parse_v1("c 136:* rw", true).unwrap();
        assert_eq!(rule, Rule { allow: true, kind: Some(DEV_CHAR), major: Some(136), minor: None, access: ACCESS_READ | ACCESS_WRITE });
        assert!(Rule::parse_v1("x 1:1 r", true).is_none());
    }

    /// Loads a deny-all-but-null filter into the kernel, attaches it to a
    /// scratch cgroup on the host's cgroup2 mount, and checks from a child
    /// in that cgroup that /dev/null opens and /dev/zero does not.
    #[test]
    fn filter_enforced_by_kernel() {
        let Some(unified) = crate::cgroups::hierarchies().unwrap().into_iter().find(|h| h.unified) else {
            panic!("no cgroup2 mount on this host");
        };
        let dir = unified.mount_point.join(format!("conman-devtest-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let rules = vec![
            Rule::parse_v1("a *:* rwm", false).unwrap(),
            Rule::parse_v1("c 1:3 rw", true).unwrap(),
        ];
        let program = load(&rules).unwrap();
        attach(&program, &dir).unwrap();

        // SAFETY: the test process forks a child that only makes syscalls
        // and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let me = std::process::id().to_string();
            let joined = std::fs::write(dir.join("cgroup.procs"), me).is_ok();
            let null = std::fs::File::open("/dev/null").is_ok();
            let zero = std::fs::File::open("/dev/zero").is_ok();
            let code = if joined && null && !zero { 0 } else { 1 + u8::from(zero) as i32 * 2 + u8::from(!null) as i32 * 4 };
            // SAFETY: leave the child without running the test harness.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        std::fs::remove_dir(&dir).unwrap();
        assert!(libc::WIFEXITED(status), "child status {status}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "1: join failed, +2: /dev/zero opened, +4: /dev/null refused");
    }
}
