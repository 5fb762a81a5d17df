//! Signal names and numbers as `kill` accepts them.

use crate::error::{Error, Result};

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Parses a signal given as a number (`9`), a name (`KILL`, `kill`) or a
/// name with prefix (`SIGKILL`), including `RTMIN+N` and `RTMAX-N`.
pub fn parse(text: &str) -> Result<i32> {
    let invalid = || Error::InvalidArgument(format!("invalid signal \"{text}\""));
    let trimmed = text.trim();
    if let Ok(number) = trimmed.parse::<i32>() {
        // 0 checks that the process exists without signalling it, as kill(2).
        if number >= 0 && number <= libc::SIGRTMAX() {
            return Ok(number);
        }
        return Err(invalid());
    }
    let upper = trimmed.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, number)) = SIGNALS.iter().find(|(n, _)| *n == name) {
        return Ok(number);
    }
    let realtime = |base: i32, rest: &str, sign: i32| -> Option<i32> {
        let offset: i32 = if rest.is_empty() { 0 } else { rest.parse().ok()? };
        let number = base + sign * offset;
        (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&number).then_some(number)
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let rest = rest.strip_prefix('+').unwrap_or(rest);
        return realtime(libc::SIGRTMIN(), rest, 1).ok_or_else(invalid);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let rest = rest.strip_prefix('-').unwrap_or(rest);
        return realtime(libc::SIGRTMAX(), rest, -1).ok_or_else(invalid);
    }
    Err(invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("9").unwrap(), libc::SIGKILL);
        assert_eq!(parse("KILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse("SIGKILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse("sigterm").unwrap(), libc::SIGTERM);
        assert_eq!(parse("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
    }

    #[test]
    fn invalid_signals() {
        assert_eq!(parse("0").unwrap(), 0);
        for bad in ["-1", "999", "NOPE", "SIG", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
