//! The minimal init that [`CreateOptions::reaper_init`] selects: the
//! container's init forks the program and stays behind as pid 1.
//!
//! A program that runs as pid 1 of a pid namespace gets no default signal
//! actions: the kernel drops a SIGTERM or SIGINT that it has no handler
//! for. Every orphan of the container also becomes its child, which it may
//! never reap. With the reaper, the init forks once `start` has released
//! it. The child execs the program. The init blocks every signal, waits for
//! them with sigwaitinfo(2), forwards each one to the program, reaps every
//! child that exits, and exits with the program's status (128+N after
//! signal N) as soon as the program has exited. The kernel then kills
//! whatever is left in the pid namespace.
//!
//! Nothing has to exist in the container's root filesystem: the init keeps
//! running the code of the binary that created the container, which is
//! already in memory, so a static busybox rootfs works as well as a full
//! distribution.
//!
//! [`CreateOptions::reaper_init`]: crate::CreateOptions::reaper_init

use crate::container::exit_code;
use crate::process::ExecArgs;

/// The init's name in `/proc/1/comm` and `/proc/1/cmdline`; at most 15
/// bytes, the length of a task's comm.
pub const INIT_NAME: &str = "conman-init";

/// Forks the container's program, and turns the calling init into its
/// reaper. With `terminal`, the program gets a process group of its own
/// and becomes the terminal's foreground group, so that Ctrl-C reaches it
/// and not the init. Never returns.
pub(crate) fn fork_program(exec: ExecArgs, terminal: bool) -> ! {
    // Blocked before the fork, so that no signal sent from now on is lost:
    // the init collects it with sigwaitinfo, and the program receives its
    // own once it unblocks them just before execve.
    let all = full_signal_set();
    // SAFETY: changes the mask of this single-threaded process.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut()) };

    // SAFETY: the process is single-threaded, so the child may run any code.
    let program = unsafe { libc::fork() };
    if program < 0 {
        fail("fork the container's program", std::io::Error::last_os_error());
    }
    if program == 0 {
        if terminal {
            take_terminal();
        }
        let empty = empty_signal_set();
        // SAFETY: changes the mask of this single-threaded process.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) };
        exec.exec()
    }
    drop(exec);
    reap_until_exit(program, &all)
}

/// Moves the forked program into a process group of its own and makes
/// that group the foreground group of the terminal on fd 0. SIGTTOU is
/// still blocked here, so tcsetpgrp(3) from what is for now a background
/// group succeeds.
fn take_terminal() {
    // SAFETY: plain syscalls on this process and its stdin.
    unsafe {
        if libc::setpgid(0, 0) < 0 {
            fail("create the program's process group", std::io::Error::last_os_error());
        }
        if libc::tcsetpgrp(0, libc::getpid()) < 0 {
            fail("give the terminal to the program", std::io::Error::last_os_error());
        }
    }
}

/// Forwards every signal but SIGCHLD to `program` and reaps every exited
/// child, until the program exits; then exits with its exit code.
fn reap_until_exit(program: libc::pid_t, signals: &libc::sigset_t) -> ! {
    set_process_name();
    // The init inherited every descriptor of the process that created the
    // container, marked close-on-exec for the program's execve. It never
    // execs, so it closes them itself: a report pipe or socket of the
    // caller held open here would keep that caller waiting for end-of-file
    // for as long as the container runs. Stdio stays: it is the
    // container's own.
    close_descriptors_from(3);
    // In a container that shares the host's pid namespace the init is not
    // pid 1, so orphans would go past it to the host's reaper.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };

    loop {
        // SAFETY: `info` is written by the kernel before it is read.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid signal set and out-parameter.
        let signal = unsafe { libc::sigwaitinfo(signals, &mut info) };
        if signal < 0 {
            // EINTR: a stop and continue (SIGSTOP, SIGCONT) interrupted the
            // wait.
            continue;
        }
        if signal == libc::SIGCHLD {
            if let Some(code) = reap_children(program) {
                // SAFETY: _exit skips destructors of the copied runtime state.
                unsafe { libc::_exit(code) }
            }
            continue;
        }
        // SAFETY: kill with a pid and a signal number. The program may have
        // exited already (ESRCH): its SIGCHLD is then pending and ends the
        // loop.
        unsafe { libc::kill(program, signal) };
    }
}

/// Reaps every exited child of the calling process without blocking, and
/// returns the exit code of `program` (128+N after signal N) when it is
/// among them. The other children are orphans that the caller adopted.
pub fn reap_children(program: libc::pid_t) -> Option<i32> {
    let mut program_code = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out-parameter.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return program_code;
        }
        if pid == program {
            program_code = Some(exit_code(status));
        }
    }
}

/// Names the init [`INIT_NAME`] in `/proc/PID/comm` and `/proc/PID/cmdline`,
/// and clears its environment area. The init is a copy of the process that
/// created the container, so its command line and environment are those of
/// that process (for `conman`, every flag, `-e KEY=VALUE` values included),
/// and any process in the container may read `/proc/1/cmdline`.
fn set_process_name() {
    let name = std::ffi::CString::new(INIT_NAME).expect("no NUL in the name");
    // SAFETY: PR_SET_NAME copies at most 16 bytes of a valid C string.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };

    // arg_start, arg_end, env_start and env_end are fields 48 to 51 of
    // /proc/PID/stat (proc(5)). The fields after the command name in
    // parentheses start at field 3.
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    let Some((_, fields)) = stat.rsplit_once(") ") else {
        return;
    };
    let fields: Vec<usize> = fields.split_whitespace().skip(45).take(4).filter_map(|f| f.parse().ok()).collect();
    let [arg_start, arg_end, env_start, env_end] = fields[..] else {
        return;
    };
    if arg_end <= arg_start || env_end < env_start {
        return;
    }
    // SAFETY: the kernel placed the argument and environment strings in
    // these ranges of the stack when the process image was loaded. They are
    // mapped and writable, and this single-threaded process never reads
    // its arguments or environment again.
    unsafe {
        std::ptr::write_bytes(env_start as *mut u8, 0, env_end - env_start);
        let area = std::slice::from_raw_parts_mut(arg_start as *mut u8, arg_end - arg_start);
        area.fill(0);
        let length = INIT_NAME.len().min(area.len() - 1);
        area[..length].copy_from_slice(&INIT_NAME.as_bytes()[..length]);
    }
}

fn close_descriptors_from(first: u32) {
    // SAFETY: close_range only closes descriptors.
    if unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) } == 0 {
        return;
    }
    // Kernels before 5.9 lack close_range: walk /proc/self/fd instead.
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let open: Vec<i32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|name| name.parse().ok()))
        .filter(|&fd| fd >= first as i32)
        .collect();
    for fd in open {
        // SAFETY: closing a descriptor number; the directory's own
        // descriptor is already closed and fails harmlessly.
        unsafe { libc::close(fd) };
    }
}

fn full_signal_set() -> libc::sigset_t {
    // SAFETY: sigfillset initialises the set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        set
    }
}

fn empty_signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        set
    }
}

/// Prints why the program could not be started on the container's stderr,
/// the only channel left after `start`, and exits with 126 as a shell does
/// for a program that cannot run.
fn fail(operation: &str, err: std::io::Error) -> ! {
    let message = format!("conman-runtime: {operation}: {err}\n");
    // SAFETY: write to stderr and exit without running destructors.
    unsafe {
        libc::write(2, message.as_ptr().cast(), message.len());
        libc::_exit(126)
    }
}
