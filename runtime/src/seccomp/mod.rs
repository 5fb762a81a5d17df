//! Seccomp: `linux.seccomp` compiled to a classic BPF program.
//!
//! seccompiler, our seccomp dependency, builds filters with a single action
//! for every matching rule, while an OCI profile gives each rule its own
//! action (ALLOW for most syscalls, ERRNO or KILL for some) and has
//! arguments compared with masks. So the program is generated here, as
//! seccompiler's `sock_filter` instructions, and loaded with seccomp(2)
//! directly, because seccompiler's loader always sets no_new_privs.
//!
//! Layout of the program:
//! 1. Load the architecture. Only x86_64 syscall numbers are in the table,
//!    so a foreign architecture (or the x32 ABI) gets the default action, or
//!    KILL_PROCESS when the default would allow the call.
//! 2. Load the syscall number; for each rule, in the profile's order, test
//!    the number and the argument conditions and return the rule's action.
//! 3. A syscall numbered above every syscall the profile names gets ENOSYS
//!    when the default is an errno, so that libc falls back from a syscall
//!    newer than the profile (clone3 under an old profile) to an older one.
//! 4. Return the default action.
//!
//! Each test is a conditional jump over one unconditional `ja`, so every
//! conditional offset is 0 or 1 and long distances use `ja`'s 32-bit
//! offset: the program stays valid whatever its length.

pub mod notify;
mod x86_64;

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator};
use seccompiler::sock_filter;

use crate::error::{Error, Result};

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_KILL_THREAD: u32 = 0x0000_0000;
const SECCOMP_RET_TRAP: u32 = 0x0003_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
const SECCOMP_RET_LOG: u32 = 0x7ffc_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;

// Classic BPF opcodes (linux/filter.h).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGT_K: u16 = 0x25;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_ALU_AND_K: u16 = 0x54;
const BPF_RET_K: u16 = 0x06;

/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const fn data_arg_low(index: u32) -> u32 {
    16 + 8 * index
}

/// The kernel's limit on the length of a classic BPF program.
const BPF_MAXINSNS: usize = 4096;

/// seccomp(2) flag that makes the kernel return a user notification fd.
const SECCOMP_FILTER_FLAG_NEW_LISTENER: u32 = 1 << 3;

/// A compiled filter, ready to load in the container's init.
#[derive(Clone, Debug)]
pub struct Filter {
    pub program: Vec<sock_filter>,
    pub flags: u32,
    /// The agent that receives the listener fd when a rule uses SCMP_ACT_NOTIFY
    /// (`linux.seccomp.listenerPath`), with `listenerMetadata`.
    pub listener: Option<notify::Listener>,
}

/// Returns the x86_64 number of a syscall name.
pub fn syscall_number(name: &str) -> Option<u32> {
    // A profile names hundreds of syscalls (podman's default 437), so the
    // lookup is a binary search in a copy of the table sorted by name.
    static BY_NAME: OnceLock<Vec<(&str, u32)>> = OnceLock::new();
    let by_name = BY_NAME.get_or_init(|| {
        let mut sorted = x86_64::SYSCALLS.to_vec();
        sorted.sort_unstable_by_key(|&(name, _)| name);
        sorted
    });
    let index = by_name.binary_search_by_key(&name, |&(name, _)| name).ok()?;
    Some(by_name[index].1)
}

fn action_value(action: LinuxSeccompAction, errno: Option<u32>) -> u32 {
    match action {
        LinuxSeccompAction::ScmpActAllow => SECCOMP_RET_ALLOW,
        LinuxSeccompAction::ScmpActErrno => SECCOMP_RET_ERRNO | (errno.unwrap_or(libc::EPERM as u32) & 0xffff),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => SECCOMP_RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => SECCOMP_RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => SECCOMP_RET_TRAP,
        LinuxSeccompAction::ScmpActTrace => SECCOMP_RET_TRACE | (errno.unwrap_or(0) & 0xffff),
        LinuxSeccompAction::ScmpActLog => SECCOMP_RET_LOG,
        LinuxSeccompAction::ScmpActNotify => SECCOMP_RET_USER_NOTIF,
    }
}

/// Instructions with symbolic jump targets, resolved by [`Assembler::finish`].
#[derive(Default)]
struct Assembler {
    code: Vec<sock_filter>,
    /// (index of a `ja` instruction, label it jumps to)
    fixups: Vec<(usize, usize)>,
    labels: Vec<Option<usize>>,
}

impl Assembler {
    fn emit(&mut self, code: u16, jt: u8, jf: u8, k: u32) {
        self.code.push(sock_filter { code, jt, jf, k });
    }

    fn new_label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }

    fn bind(&mut self, label: usize) {
        self.labels[label] = Some(self.code.len());
    }

    fn jump(&mut self, label: usize) {
        self.fixups.push((self.code.len(), label));
        self.emit(BPF_JMP_JA, 0, 0, 0);
    }

    fn load(&mut self, offset: u32) {
        self.emit(BPF_LD_W_ABS, 0, 0, offset);
    }

    fn ret(&mut self, value: u32) {
        self.emit(BPF_RET_K, 0, 0, value);
    }

    /// Jumps to `label` unless the accumulator equals `value`.
    fn jump_unless_eq(&mut self, value: u32, label: usize) {
        self.emit(BPF_JMP_JEQ_K, 1, 0, value);
        self.jump(label);
    }

    /// Jumps to `label` if the accumulator equals `value`.
    fn jump_if_eq(&mut self, value: u32, label: usize) {
        self.emit(BPF_JMP_JEQ_K, 0, 1, value);
        self.jump(label);
    }

    /// Jumps to `label` if the accumulator is above `value` (unsigned).
    fn jump_if_gt(&mut self, value: u32, label: usize) {
        self.emit(BPF_JMP_JGT_K, 0, 1, value);
        self.jump(label);
    }

    /// Jumps to `label` if the accumulator is below `value` (unsigned).
    fn jump_if_lt(&mut self, value: u32, label: usize) {
        self.emit(BPF_JMP_JGE_K, 1, 0, value);
        self.jump(label);
    }

    /// Jumps to `label` if the accumulator is at least `value` (unsigned).
    fn jump_if_ge(&mut self, value: u32, label: usize) {
        self.emit(BPF_JMP_JGE_K, 0, 1, value);
        self.jump(label);
    }

    fn finish(mut self) -> Result<Vec<sock_filter>> {
        for &(at, label) in &self.fixups {
            let target = self.labels[label].expect("every label is bound");
            self.code[at].k = (target - at - 1) as u32;
        }
        if self.code.len() > BPF_MAXINSNS {
            return Err(Error::InvalidConfig(format!(
                "the seccomp profile compiles to {} BPF instructions, above the kernel's limit of {BPF_MAXINSNS}",
                self.code.len()
            )));
        }
        Ok(self.code)
    }
}

/// Syscall numbers of consecutive rules without argument conditions, with
/// the action of each, not yet emitted.
#[derive(Default)]
struct UnconditionalRun {
    actions: BTreeMap<u32, u32>,
    /// Syscalls that an emitted run already decides. No later rule can
    /// match them, so they are left out of later runs.
    decided: HashSet<u32>,
}

impl UnconditionalRun {
    /// Adds syscall `nr` with `action`, unless an earlier rule decides it.
    fn add(&mut self, nr: u32, action: u32) {
        if !self.decided.contains(&nr) {
            self.actions.entry(nr).or_insert(action);
        }
    }

    /// Emits the collected syscalls as range checks per action, each range
    /// of consecutive numbers tested with two comparisons. Within one run
    /// every syscall has one action, so the order of the checks does not
    /// change which rule matches first.
    fn emit(&mut self, asm: &mut Assembler) {
        if self.actions.is_empty() {
            return;
        }
        let mut by_action: BTreeMap<u32, Vec<(u32, u32)>> = BTreeMap::new();
        for (&nr, &action) in &self.actions {
            let ranges = by_action.entry(action).or_default();
            match ranges.last_mut() {
                Some((_, last)) if *last + 1 == nr => *last = nr,
                _ => ranges.push((nr, nr)),
            }
        }
        asm.load(DATA_NR);
        for (action, ranges) in by_action {
            let matched = asm.new_label();
            let next_action = asm.new_label();
            for (first, last) in ranges {
                if first == last {
                    asm.jump_if_eq(first, matched);
                    continue;
                }
                let next_range = asm.new_label();
                asm.jump_if_lt(first, next_range);
                asm.jump_if_gt(last, next_range);
                asm.jump(matched);
                asm.bind(next_range);
            }
            asm.jump(next_action);
            asm.bind(matched);
            asm.ret(action);
            asm.bind(next_action);
        }
        self.decided.extend(self.actions.keys());
        self.actions.clear();
    }
}

/// Splits a rule's argument conditions into alternatives: the rule applies
/// when every condition of one group holds. The conditions form one group
/// (all must hold) unless two of them test the same argument. Then each
/// condition is a group of its own, so that `arg0 == 1` and `arg0 == 2`
/// mean either value, as in runc and libseccomp-based runtimes, instead of
/// a rule that can never match.
fn condition_groups(args: &[LinuxSeccompArg]) -> Vec<Vec<&LinuxSeccompArg>> {
    let mut seen = HashSet::new();
    let repeats_index = args.iter().any(|arg| !seen.insert(arg.index()));
    if repeats_index {
        args.iter().map(|arg| vec![arg]).collect()
    } else {
        vec![args.iter().collect()]
    }
}

/// Emits the test of one argument condition: falls through when it is true,
/// jumps to `fail` when it does not. 64-bit values are compared as high
/// and low 32-bit words.
fn emit_condition(asm: &mut Assembler, arg: &LinuxSeccompArg, fail: usize) -> Result<()> {
    let index = arg.index() as u32;
    if index > 5 {
        return Err(Error::InvalidConfig(format!("seccomp argument index {index} is above 5")));
    }
    let low_offset = data_arg_low(index);
    let high_offset = low_offset + 4;
    let value = arg.value();
    let (value_high, value_low) = ((value >> 32) as u32, value as u32);
    match arg.op() {
        LinuxSeccompOperator::ScmpCmpEq => {
            asm.load(high_offset);
            asm.jump_unless_eq(value_high, fail);
            asm.load(low_offset);
            asm.jump_unless_eq(value_low, fail);
        }
        LinuxSeccompOperator::ScmpCmpNe => {
            let matched = asm.new_label();
            asm.load(high_offset);
            asm.jump_unless_eq(value_high, matched);
            asm.load(low_offset);
            asm.jump_if_eq(value_low, fail);
            asm.bind(matched);
        }
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            let mask = value;
            let expected = arg.value_two().unwrap_or(0);
            asm.load(high_offset);
            asm.emit(BPF_ALU_AND_K, 0, 0, (mask >> 32) as u32);
            asm.jump_unless_eq((expected >> 32) as u32, fail);
            asm.load(low_offset);
            asm.emit(BPF_ALU_AND_K, 0, 0, mask as u32);
            asm.jump_unless_eq(expected as u32, fail);
        }
        op @ (LinuxSeccompOperator::ScmpCmpGt
        | LinuxSeccompOperator::ScmpCmpGe
        | LinuxSeccompOperator::ScmpCmpLt
        | LinuxSeccompOperator::ScmpCmpLe) => {
            // Unsigned 64-bit order: the high words decide unless equal.
            let matched = asm.new_label();
            let (above, below) = match op {
                LinuxSeccompOperator::ScmpCmpGt | LinuxSeccompOperator::ScmpCmpGe => (matched, fail),
                _ => (fail, matched),
            };
            asm.load(high_offset);
            asm.jump_if_gt(value_high, above);
            asm.jump_unless_eq(value_high, below);
            asm.load(low_offset);
            match op {
                LinuxSeccompOperator::ScmpCmpGt => {
                    asm.jump_if_gt(value_low, matched);
                    asm.jump(fail);
                }
                LinuxSeccompOperator::ScmpCmpGe => {
                    asm.jump_if_ge(value_low, matched);
                    asm.jump(fail);
                }
                LinuxSeccompOperator::ScmpCmpLt => asm.jump_if_ge(value_low, fail),
                _ => asm.jump_if_gt(value_low, fail),
            }
            asm.bind(matched);
        }
    }
    Ok(())
}

/// Compiles `linux.seccomp` into a BPF program for x86_64.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Filter> {
    if seccomp.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(Error::InvalidConfig(
            "\"linux.seccomp.defaultAction\" cannot be SCMP_ACT_NOTIFY: every syscall of the runtime's own set-up would wait for the agent".into(),
        ));
    }
    let default_action = action_value(seccomp.default_action(), seccomp.default_errno_ret());
    let default_allows = matches!(default_action, SECCOMP_RET_ALLOW | SECCOMP_RET_LOG);

    for arch in seccomp.architectures().iter().flatten() {
        if !matches!(arch, Arch::ScmpArchX86_64 | Arch::ScmpArchX86 | Arch::ScmpArchX32 | Arch::ScmpArchNative) {
            tracing::debug!(?arch, "seccomp architecture does not run on this host");
        }
    }

    let mut flags = 0u32;
    for flag in seccomp.flags().iter().flatten() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => 1 << 1,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 1 << 2,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 1 << 5,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => {
                return Err(Error::InvalidConfig(
                    "seccomp flag SECCOMP_FILTER_FLAG_TSYNC is not supported: the container's init is single-threaded".into(),
                ))
            }
        };
    }

    let mut asm = Assembler::default();
    let foreign = asm.new_label();
    asm.load(DATA_ARCH);
    asm.jump_unless_eq(AUDIT_ARCH_X86_64, foreign);
    asm.load(DATA_NR);
    asm.jump_if_ge(X32_SYSCALL_BIT, foreign);

    let mut max_named = 0u32;
    let mut notify = false;
    // Rules apply in order, and the first match decides. Consecutive rules
    // without argument conditions are collected in `unconditional` and
    // emitted together as range checks. With one check per syscall,
    // podman's profile (about 370 syscalls) made a program of about 1500
    // instructions, which took the kernel 0.7 ms to load on the test VM.
    let mut unconditional = UnconditionalRun::default();
    for (rule_index, rule) in seccomp.syscalls().iter().flatten().enumerate() {
        let action = action_value(rule.action(), rule.errno_ret());
        if action == SECCOMP_RET_USER_NOTIF {
            notify = true;
            // The runtime hands the listener over with sendmsg right after
            // loading the filter: a notified sendmsg would wait for an
            // agent that has no listener yet.
            if rule.names().iter().any(|name| name == "sendmsg") {
                return Err(Error::InvalidConfig(format!(
                    "\"linux.seccomp.syscalls[{rule_index}]\" uses SCMP_ACT_NOTIFY for sendmsg, which the runtime needs to pass the listener to the agent"
                )));
            }
        }
        let args = rule.args().clone().unwrap_or_default();
        let alternatives = condition_groups(&args);
        for name in rule.names() {
            let Some(nr) = syscall_number(name) else {
                tracing::debug!(syscall = %name, "seccomp: syscall unknown on x86_64, skipped");
                continue;
            };
            max_named = max_named.max(nr);
            if action == default_action {
                continue;
            }
            if args.is_empty() {
                unconditional.add(nr, action);
                continue;
            }
            unconditional.emit(&mut asm);
            for group in &alternatives {
                let next = asm.new_label();
                asm.load(DATA_NR);
                asm.jump_unless_eq(nr, next);
                for arg in group {
                    emit_condition(&mut asm, arg, next)?;
                }
                asm.ret(action);
                asm.bind(next);
            }
        }
    }

    unconditional.emit(&mut asm);

    if default_action & 0xffff_0000 == SECCOMP_RET_ERRNO && max_named > 0 {
        let known = asm.new_label();
        asm.load(DATA_NR);
        asm.jump_if_gt(max_named, known);
        asm.ret(default_action);
        asm.bind(known);
        asm.ret(SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
    } else {
        asm.ret(default_action);
    }

    asm.bind(foreign);
    asm.ret(if default_allows { SECCOMP_RET_KILL_PROCESS } else { default_action });

    let listener = if notify {
        let path = seccomp.listener_path().clone().ok_or_else(|| {
            Error::InvalidConfig(
                "\"linux.seccomp.listenerPath\" is required because a rule uses SCMP_ACT_NOTIFY".into(),
            )
        })?;
        if !path.is_absolute() {
            return Err(Error::InvalidConfig(format!(
                "\"linux.seccomp.listenerPath\" \"{}\" must be an absolute path",
                path.display()
            )));
        }
        flags |= SECCOMP_FILTER_FLAG_NEW_LISTENER;
        Some(notify::Listener {
            path,
            metadata: seccomp.listener_metadata().clone().unwrap_or_default(),
        })
    } else {
        None
    };

    Ok(Filter {
        program: asm.finish()?,
        flags,
        listener,
    })
}

/// Loads `filter` into the calling thread, and returns the user notification
/// fd when the filter has SCMP_ACT_NOTIFY rules. Without no_new_privs the
/// caller needs CAP_SYS_ADMIN.
pub fn load(filter: &Filter) -> Result<Option<std::os::fd::OwnedFd>> {
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const sock_filter,
    }
    let program = SockFprog {
        len: filter.program.len() as u16,
        filter: filter.program.as_ptr(),
    };
    const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
    // SAFETY: `program` points to `len` valid instructions that outlive the
    // call; the kernel copies them.
    let rc = unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, filter.flags as libc::c_ulong, &program as *const SockFprog) };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        let hint = if err.raw_os_error() == Some(libc::EACCES) {
            " (without noNewPrivileges the filter needs CAP_SYS_ADMIN)"
        } else if err.raw_os_error() == Some(libc::EINVAL) && filter.flags != 0 {
            " (this kernel may not know one of the seccomp flags)"
        } else {
            ""
        };
        return Err(Error::io(format!("load the seccomp filter{hint}"), err));
    }
    if filter.flags & SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
        // SAFETY: with NEW_LISTENER, seccomp(2) returns a new fd that
        // nothing else owns.
        return Ok(Some(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(rc as i32) }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a classic BPF program on one `seccomp_data`, with the opcodes
    /// that [`compile`] emits.
    fn interpret(program: &[sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        let mut data = vec![0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, arg) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_le_bytes());
        }
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let ins = &program[pc];
            pc += 1;
            match ins.code {
                BPF_LD_W_ABS => {
                    let at = ins.k as usize;
                    acc = u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
                }
                BPF_ALU_AND_K => acc &= ins.k,
                BPF_JMP_JA => pc += ins.k as usize,
                BPF_JMP_JEQ_K | BPF_JMP_JGT_K | BPF_JMP_JGE_K => {
                    let taken = match ins.code {
                        BPF_JMP_JEQ_K => acc == ins.k,
                        BPF_JMP_JGT_K => acc > ins.k,
                        _ => acc >= ins.k,
                    };
                    pc += if taken { ins.jt } else { ins.jf } as usize;
                }
                BPF_RET_K => return ins.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn profile(json: &str) -> Filter {
        compile(&serde_json::from_str(json).unwrap()).unwrap()
    }

    const NR_MKDIR: u32 = 83;
    const NR_PERSONALITY: u32 = 135;

    #[test]
    fn syscall_lookup_matches_table() {
        for &(name, number) in x86_64::SYSCALLS {
            assert_eq!(syscall_number(name), Some(number), "syscall {name}");
        }
        assert_eq!(syscall_number("no_such_syscall"), None);
        assert_eq!(syscall_number(""), None);
    }

    #[test]
    fn rule_actions_and_default() {
        let filter = profile(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
                "syscalls": [
                  {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                  {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
        );
        let run = |nr| interpret(&filter.program, nr, AUDIT_ARCH_X86_64, [0; 6]);
        assert_eq!(run(0), SECCOMP_RET_ALLOW);
        assert_eq!(run(1), SECCOMP_RET_ALLOW);
        assert_eq!(run(NR_MKDIR), SECCOMP_RET_ERRNO | 13);
        assert_eq!(run(2), SECCOMP_RET_ERRNO | 1);
    }

    #[test]
    fn first_matching_rule_decides() {
        // write is listed twice and mkdir after a rule with conditions, so
        // the range checks must keep the rules' order.
        let filter = profile(
            r#"{"defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [
                  {"names": ["read", "write", "open", "close", "stat"], "action": "SCMP_ACT_ALLOW"},
                  {"names": ["write", "mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                  {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                   "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                  {"names": ["personality", "mkdir", "getpid"], "action": "SCMP_ACT_KILL_PROCESS"}
                ]}"#,
        );
        let run = |nr, arg0| interpret(&filter.program, nr, AUDIT_ARCH_X86_64, [arg0, 0, 0, 0, 0, 0]);
        for nr in 0..=4 {
            assert_eq!(run(nr, 0), SECCOMP_RET_ALLOW, "syscall {nr}");
        }
        assert_eq!(run(5, 0), SECCOMP_RET_ERRNO | libc::EPERM as u32);
        assert_eq!(run(NR_MKDIR, 0), SECCOMP_RET_ERRNO | 38);
        assert_eq!(run(NR_PERSONALITY, 0), SECCOMP_RET_ALLOW);
        assert_eq!(run(NR_PERSONALITY, 1), SECCOMP_RET_KILL_PROCESS);
        assert_eq!(run(39, 0), SECCOMP_RET_KILL_PROCESS);
    }

    #[test]
    fn many_rules_compile_to_ranges() {
        // One rule allows every syscall of the table whose number is not a
        // multiple of 7. A later rule denies all of them, so only the
        // multiples of 7 reach it.
        let names: Vec<&str> = x86_64::SYSCALLS.iter().map(|&(name, _)| name).collect();
        let denied: Vec<&str> = x86_64::SYSCALLS.iter().filter(|&&(_, nr)| nr % 7 == 0).map(|&(name, _)| name).collect();
        let allowed: Vec<&str> = names.iter().copied().filter(|name| !denied.contains(name)).collect();
        let json = serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": allowed, "action": "SCMP_ACT_ALLOW"},
                {"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
            ]
        });
        let filter = compile(&serde_json::from_value(json).unwrap()).unwrap();
        assert!(filter.program.len() < 600, "{} instructions", filter.program.len());
        for &(name, nr) in x86_64::SYSCALLS {
            let expected = if nr % 7 == 0 { SECCOMP_RET_ERRNO | 1 } else { SECCOMP_RET_ALLOW };
            assert_eq!(interpret(&filter.program, nr, AUDIT_ARCH_X86_64, [0; 6]), expected, "syscall {name}");
        }
    }

    #[test]
    fn newer_syscall_gets_enosys() {
        let filter = profile(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"}]}"#,
        );
        assert_eq!(interpret(&filter.program, 435, AUDIT_ARCH_X86_64, [0; 6]), SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
        assert_eq!(interpret(&filter.program, 2, AUDIT_ARCH_X86_64, [0; 6]), SECCOMP_RET_ERRNO | libc::EPERM as u32);
    }

    #[test]
    fn foreign_arch_never_allowed() {
        let filter = profile(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}"#);
        assert_eq!(interpret(&filter.program, 1, 0x4000_0003, [0; 6]), SECCOMP_RET_KILL_PROCESS);
        assert_eq!(interpret(&filter.program, X32_SYSCALL_BIT | 1, AUDIT_ARCH_X86_64, [0; 6]), SECCOMP_RET_KILL_PROCESS);
        let strict = profile(r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []}"#);
        assert_eq!(interpret(&strict.program, 1, 0x4000_0003, [0; 6]), SECCOMP_RET_ERRNO | libc::EPERM as u32);
    }

    #[test]
    fn argument_operators() {
        let cases: &[(&str, u64, Option<u64>, &[(u64, bool)])] = &[
            ("SCMP_CMP_EQ", 0x1_0000_0008, None, &[(0x1_0000_0008, true), (8, false), (0x1_0000_0009, false)]),
            ("SCMP_CMP_NE", 8, None, &[(8, false), (9, true), (0x1_0000_0008, true)]),
            ("SCMP_CMP_GT", 0x1_0000_0000, None, &[(0x1_0000_0001, true), (0x1_0000_0000, false), (5, false), (0x2_0000_0000, true)]),
            ("SCMP_CMP_GE", 0x1_0000_0000, None, &[(0x1_0000_0000, true), (0xffff_ffff, false)]),
            ("SCMP_CMP_LT", 0x1_0000_0000, None, &[(0xffff_ffff, true), (0x1_0000_0000, false), (0x2_0000_0000, false)]),
            ("SCMP_CMP_LE", 10, None, &[(10, true), (11, false), (0, true), (0x1_0000_0000, false)]),
            ("SCMP_CMP_MASKED_EQ", 0xff, Some(0x08), &[(0x108, true), (0x09, false), (0x1_0000_0008, true)]),
        ];
        for &(op, value, value_two, checks) in cases {
            let value_two = value_two.map_or(String::new(), |v| format!(r#", "valueTwo": {v}"#));
            let json = format!(
                r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7,
                    "args": [{{"index": 0, "value": {value}, "op": "{op}"{value_two}}}]}}]}}"#
            );
            let filter = profile(&json);
            for &(arg, matches) in checks {
                let result = interpret(&filter.program, NR_PERSONALITY, AUDIT_ARCH_X86_64, [arg, 0, 0, 0, 0, 0]);
                let expected = if matches { SECCOMP_RET_ERRNO | 7 } else { SECCOMP_RET_ALLOW };
                assert_eq!(result, expected, "{op} {value:#x} on {arg:#x}");
            }
        }
    }

    #[test]
    fn notify_needs_listener_path() {
        let without = serde_json::from_str::<LinuxSeccomp>(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}"#,
        )
        .unwrap();
        assert!(compile(&without).unwrap_err().to_string().contains("listenerPath"));

        let with = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}"#,
        );
        assert_eq!(with.flags & SECCOMP_FILTER_FLAG_NEW_LISTENER, SECCOMP_FILTER_FLAG_NEW_LISTENER);
        let mkdir = syscall_number("mkdir").unwrap();
        assert_eq!(interpret(&with.program, mkdir, AUDIT_ARCH_X86_64, [0; 6]), SECCOMP_RET_USER_NOTIF);
    }

    #[test]
    fn notify_rejected_for_sendmsg_and_default() {
        for json in [
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/a", "syscalls": [{"names": ["sendmsg"], "action": "SCMP_ACT_NOTIFY"}]}"#,
            r#"{"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/a"}"#,
        ] {
            let seccomp = serde_json::from_str::<LinuxSeccomp>(json).unwrap();
            assert!(compile(&seccomp).is_err(), "{json}");
        }
    }
}
