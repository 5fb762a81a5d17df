//! conman: a daemonless container manager.

use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use clap::{Parser, Subcommand};
use conman_cli::logging::{LogFormat, Logger};
use manager::store::RestartPolicy;
use manager::{Manager, RootfsSource, RunOptions, Status};

const PROGRAM: &str = "conman";

#[derive(Parser)]
#[command(name = PROGRAM, version, about = "Run and manage containers, without a daemon")]
struct Cli {
    /// Directory of the container store.
    #[arg(long, global = true, default_value = "/var/lib/conman")]
    root: PathBuf,

    /// Write log messages to this file.
    #[arg(long, global = true)]
    log: Option<PathBuf>,

    /// Log debug messages too.
    #[arg(long, global = true)]
    debug: bool,

    #[command(subcommand)]
    command: Command,
}

// Flags of `run` that change the container's configuration. A plain
// comment for the same reason as on `CreateArgs`.
#[derive(clap::Args)]
struct SettingsArgs {
    /// Set an environment variable (KEY=VALUE); repeatable.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read environment variables from a file, one KEY=VALUE per line.
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// User to run as: UID or UID:GID.
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Hostname of the container (default: its short id).
    #[arg(long)]
    hostname: Option<String>,
    /// Bind mount HOST:CONTAINER[:ro]; repeatable.
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    /// Mount a tmpfs at CONTAINER[:OPTIONS]; repeatable.
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long = "read-only")]
    read_only: bool,
    /// Memory limit (bytes, or with k, m, g suffix).
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Maximum number of processes; -1 for no limit.
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Add a capability (NET_ADMIN or CAP_NET_ADMIN, or ALL); repeatable.
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop a capability (or ALL); repeatable.
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Network: `none` (a network namespace with only loopback, the
    /// default) or `host`.
    #[arg(long)]
    network: Option<String>,
    /// Security options; supported: `seccomp=FILE` and `seccomp=unconfined`
    /// (default: podman's profile from /usr/share/containers/seccomp.json).
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// CPU limit in CPUs (1.5: one and a half CPUs), as a CFS quota over a
    /// 100 ms period.
    #[arg(long, allow_hyphen_values = true)]
    cpus: Option<f64>,
    /// Give the container every capability, the host's devices and a
    /// writable /sys, without the default seccomp profile or masked paths.
    #[arg(long)]
    privileged: bool,
}

impl SettingsArgs {
    fn into_settings(self) -> manager::Result<manager::spec::Settings> {
        let invalid = |message: String| manager::Error::InvalidArgument(message);
        let mut env = Vec::new();
        for path in &self.env_file {
            let text = std::fs::read_to_string(path)
                .map_err(|err| invalid(format!("--env-file {}: {err}", path.display())))?;
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                env.push(line.to_owned());
            }
        }
        env.extend(self.env);
        let memory = self
            .memory
            .map(|m| conman_cli::units::parse_bytes(&m).map_err(|message| invalid(format!("--memory: {message}"))))
            .transpose()?;
        let host_network = match self.network.as_deref().unwrap_or("none") {
            "none" => false,
            "host" => true,
            other => return Err(invalid(format!("--network \"{other}\" is not supported: use none or host"))),
        };
        let mut seccomp = manager::spec::SeccompSetting::Default;
        for option in &self.security_opt {
            seccomp = match option.split_once('=') {
                Some(("seccomp", "unconfined")) => manager::spec::SeccompSetting::Unconfined,
                Some(("seccomp", file)) => manager::spec::SeccompSetting::File(PathBuf::from(file)),
                _ => return Err(invalid(format!("--security-opt \"{option}\" is not supported: use seccomp=FILE or seccomp=unconfined"))),
            };
        }
        if let Some(cpus) = self.cpus {
            if !(cpus > 0.0 && cpus.is_finite()) {
                return Err(invalid(format!("--cpus {cpus}: use a positive number of CPUs")));
            }
        }
        Ok(manager::spec::Settings {
            privileged: self.privileged,
            cpus: self.cpus,
            seccomp,
            env,
            workdir: self.workdir,
            user: self.user,
            hostname: self.hostname,
            volumes: self.volume,
            tmpfs: self.tmpfs,
            read_only: self.read_only,
            memory,
            pids_limit: self.pids_limit,
            cap_add: self.cap_add,
            cap_drop: self.cap_drop,
            host_network,
        })
    }
}

// Flags of `create` and `run` that are not part of the container's
// configuration. This is a plain comment, because clap would turn a doc
// comment into the help text of both subcommands once their arguments are
// deferred.
#[derive(clap::Args)]
struct CreateArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Name of the container (default: its short id).
    #[arg(long, allow_hyphen_values = true)]
    name: Option<String>,
    /// Restart policy: no, on-failure[:MAX_RETRIES] or always.
    #[arg(long, default_value = "no")]
    restart: String,
    /// Directory to use as the container's root filesystem, under an
    /// overlay that takes the container's writes. Without it, the container
    /// gets the host's programs and libraries read-only.
    #[arg(long)]
    rootfs: Option<PathBuf>,
    /// Let the container write into the --rootfs directory itself, instead
    /// of an overlay on top of it.
    #[arg(long = "rootfs-rw", requires = "rootfs")]
    rootfs_rw: bool,
    /// Rotate the container's log when it would grow past this size (bytes,
    /// or with k, m, g suffix); one rotated file is kept.
    #[arg(long = "log-max-size", allow_hyphen_values = true)]
    log_max_size: Option<String>,
    /// Program to run; the command's arguments follow it.
    #[arg(long, allow_hyphen_values = true)]
    entrypoint: Option<String>,
    /// Run a minimal init as the container's pid 1: it forwards signals to
    /// the command and reaps orphaned processes.
    #[arg(long)]
    init: bool,
    /// Create the container from this OCI bundle (config.json and its root
    /// filesystem), which is not modified; the command, -e, --env-file,
    /// -w, -u and --hostname override the bundle's values.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Keep the container's stdin open and feed it this command's stdin.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Give the container a terminal; with -i, this command's terminal is
    /// put in raw mode and relayed to it.
    #[arg(short = 't', long)]
    tty: bool,
    #[command(flatten)]
    settings: SettingsArgs,
    /// Command and arguments, after `--`.
    #[arg(trailing_var_arg = true)]
    command: Vec<String>,
}

impl CreateArgs {
    /// Reports whether the container may need the runtime to run from a
    /// protected view of its binary: with flags that can give it
    /// CAP_SYS_PTRACE, a reaper init that never calls execve, or a bundle's
    /// own configuration.
    fn may_need_protected_binary(&self) -> bool {
        self.init || self.bundle.is_some() || self.settings.privileged || !self.settings.cap_add.is_empty()
    }

    fn into_options(self) -> manager::Result<RunOptions> {
        let invalid = |message: &str| manager::Error::InvalidArgument(message.to_owned());
        if self.bundle.is_some() {
            // Flags that only make sense without a bundle. The manager
            // checks the flags of the container's settings.
            let rejected: Vec<&str> = [
                (self.rootfs.is_some(), "--rootfs"),
                (self.rootfs_rw, "--rootfs-rw"),
                (self.settings.network.is_some(), "--network"),
            ]
            .into_iter()
            .filter_map(|(set, flag)| set.then_some(flag))
            .collect();
            if !rejected.is_empty() {
                return Err(invalid(&format!(
                    "--bundle cannot be combined with {}: the bundle's config.json sets the container's root filesystem and network; change them there",
                    rejected.join(", ")
                )));
            }
        }
        let mut args = Vec::new();
        args.extend(self.entrypoint.filter(|e| !e.is_empty()));
        args.extend(self.command);
        if args.is_empty() && self.bundle.is_none() {
            return Err(invalid("no command given: use `conman run [FLAGS] -- CMD [ARGS...]`"));
        }
        let rootfs = match (self.bundle, self.rootfs) {
            (Some(bundle), _) => RootfsSource::Bundle(bundle),
            (None, Some(dir)) => RootfsSource::Directory(dir),
            (None, None) => RootfsSource::Host,
        };
        Ok(RunOptions {
            name: self.name,
            rootfs,
            rootfs_rw: self.rootfs_rw,
            remove: self.rm,
            restart: RestartPolicy::parse(&self.restart)?,
            interactive: self.interactive,
            log_max_size: self.log_max_size.map(|size| parse_log_size(&size)).transpose()?,
            tty: self.tty.then(manager::terminal_size),
            init: self.init,
            args,
            settings: self.settings.into_settings()?,
        })
    }
}

fn parse_log_size(text: &str) -> manager::Result<u64> {
    match conman_cli::units::parse_bytes(text) {
        Ok(size) if size > 0 => Ok(size as u64),
        Ok(_) => Err(manager::Error::InvalidArgument(format!("--log-max-size \"{text}\": use a positive size"))),
        Err(message) => Err(manager::Error::InvalidArgument(format!("--log-max-size: {message}"))),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
// Each subcommand's arguments are built only when that subcommand is
// invoked, because building all of them took most of the heap of a `run`.
#[command(defer = true)]
enum Command {
    /// Run a command in a new container; in the foreground, wait for it.
    Run {
        /// Start the container in the background and print its id.
        #[arg(short = 'd', long)]
        detach: bool,
        #[command(flatten)]
        create: CreateArgs,
    },
    /// Create a container without starting it; print its id.
    Create {
        #[command(flatten)]
        create: CreateArgs,
    },
    /// Start created or stopped containers in the background.
    Start {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers (running ones, or all with -a).
    Ps {
        /// Show all containers, not only the running ones.
        #[arg(short = 'a', long)]
        all: bool,
        /// Print only the ids.
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Print a container's output: stdout on stdout, stderr on stderr.
    Logs {
        /// Keep printing new output until the container exits.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Print only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
        /// Prefix each line with its time (RFC 3339, UTC).
        #[arg(short = 't', long)]
        timestamps: bool,
        container: String,
    },
    /// Wait for containers to exit and print their exit codes.
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop containers: SIGTERM, then SIGKILL after the grace period.
    Stop {
        /// Seconds to wait before SIGKILL.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to the main process of containers.
    Kill {
        /// Signal: a name (TERM, SIGTERM) or a number.
        #[arg(short = 's', long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Kill running containers first.
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop containers if they run, then start them again.
    Restart {
        /// Seconds to wait before SIGKILL.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Print details of containers as a JSON array.
    Inspect {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Attach to a running container's output, and its stdin if it was
    /// started with -i, until it exits; exit with its exit code.
    Attach {
        /// Do not send this command's stdin to the container.
        #[arg(long = "no-stdin")]
        no_stdin: bool,
        container: String,
    },
    /// Run a command in a running container.
    Exec {
        /// Keep stdin open.
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Give the command a terminal.
        #[arg(short = 't', long)]
        tty: bool,
        /// Run the command in the background.
        #[arg(short = 'd', long)]
        detach: bool,
        /// Set an environment variable (KEY=VALUE); repeatable.
        #[arg(short = 'e', long = "env")]
        env: Vec<String>,
        /// User to run as: UID or UID:GID.
        #[arg(short = 'u', long)]
        user: Option<String>,
        /// Working directory inside the container.
        #[arg(short = 'w', long)]
        workdir: Option<String>,
        container: String,
        /// Command and arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Freeze every process of containers.
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Thaw paused containers.
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Print CPU, memory and process counts of running containers, once.
    Stats {
        /// Print once and exit (the only mode so far).
        #[arg(long = "no-stream")]
        no_stream: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove every container that is not running.
    Prune,
}

fn main() -> ExitCode {
    // A closed stdout (`conman ps | head`) ends conman quietly, as it does
    // other Unix tools. The monitor ignores SIGPIPE again for itself.
    // SAFETY: setting a signal disposition before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // Usage errors exit with 125, as podman's do, so that they are not taken
    // for the container's own status.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { 125 } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    let mut logger = match Logger::init(cli.log.as_deref(), LogFormat::Text, cli.debug, None) {
        Ok(logger) => logger,
        Err(message) => {
            eprintln!("{PROGRAM}: {message}");
            return ExitCode::from(125);
        }
    };
    let needs_protected_binary = match &cli.command {
        // conman's own configuration of a plain `run` (a new pid namespace,
        // podman's default capabilities, no CAP_SYS_PTRACE, no hooks) needs
        // no protected view (see runtime::sealed_exe). The runtime checks
        // the generated config.json again and fails the run if it does.
        Command::Run { create, .. } => create.may_need_protected_binary(),
        Command::Create { .. } | Command::Start { .. } | Command::Restart { .. } | Command::Exec { .. } => true,
        _ => false,
    };
    if needs_protected_binary {
        // These commands reach the runtime's create or exec, here or in the
        // monitor they fork, which would otherwise re-execute the process
        // from a sealed copy of its binary in the middle of the command,
        // after the store changed.
        if let Err(err) = runtime::sealed_exe::ensure() {
            logger.fatal(PROGRAM, &err.to_string());
            return ExitCode::from(125);
        }
    }
    let manager = Manager::new(&cli.root);
    let mut report = |err: manager::Error| {
        let message = err.to_string();
        logger.fatal(PROGRAM, &message);
        failure_code(&message)
    };
    let code = match cli.command {
        Command::Run { detach, create } => match create.into_options() {
            Ok(options) if detach => match manager.run_detached(&options) {
                Ok(id) => {
                    println!("{id}");
                    0
                }
                Err(err) => report(err),
            },
            Ok(options) => match manager.run_attached(&options) {
                Ok(code) => code.clamp(0, 255) as u8,
                Err(err) => report(err),
            },
            Err(err) => report(err),
        },
        Command::Create { create } => match create.into_options().and_then(|options| manager.create(&options)) {
            Ok(entry) => {
                println!("{}", entry.record.id);
                0
            }
            Err(err) => report(err),
        },
        Command::Start { containers } => for_each(&containers, &mut report, |c| manager.start(c).map(|_| println!("{c}"))),
        Command::Ps { all, quiet, format } => match ps(&manager, all, quiet, format) {
            Ok(()) => 0,
            Err(err) => report(err),
        },
        Command::Logs { follow, tail, timestamps, container } => {
            let options = manager::log::PrintOptions { timestamps, tail };
            match manager.logs(&container, options, follow) {
                Ok(()) => 0,
                Err(err) => report(err),
            }
        }
        Command::Wait { containers } => for_each(&containers, &mut report, |c| manager.wait(c).map(|code| println!("{code}"))),
        Command::Stop { time, containers } => {
            for_each(&containers, &mut report, |c| manager.stop(c, Duration::from_secs(time)).map(|_| println!("{c}")))
        }
        Command::Kill { signal, containers } => match runtime::signal::parse(&signal) {
            Ok(number) => for_each(&containers, &mut report, |c| manager.kill(c, number).map(|_| println!("{c}"))),
            Err(err) => report(err.into()),
        },
        Command::Rm { force, containers } => rm(&manager, &containers, force, &mut report),
        Command::Restart { time, containers } => {
            for_each(&containers, &mut report, |c| manager.restart(c, Duration::from_secs(time)).map(|_| println!("{c}")))
        }
        Command::Inspect { containers } => {
            let mut details = Vec::new();
            let code = for_each(&containers, &mut report, |c| manager.inspect(c).map(|value| details.push(value)));
            println!("{}", serde_json::to_string_pretty(&details).expect("JSON values serialise"));
            code
        }
        Command::Attach { no_stdin, container } => match manager.attach(&container, !no_stdin) {
            Ok(code) => code.clamp(0, 255) as u8,
            Err(err) => report(err),
        },
        Command::Exec { interactive, tty, detach, env, user, workdir, container, command } => {
            let request = manager::ExecRequest { args: command, env, user, workdir, interactive, tty, detach };
            match manager.exec(&container, &request) {
                Ok(code) => code.clamp(0, 255) as u8,
                Err(err) => report(err),
            }
        }
        Command::Pause { containers } => for_each(&containers, &mut report, |c| manager.pause(c).map(|_| println!("{c}"))),
        Command::Unpause { containers } => for_each(&containers, &mut report, |c| manager.unpause(c).map(|_| println!("{c}"))),
        Command::Stats { no_stream: _, format, containers } => stats(&manager, &containers, format, &mut report),
        Command::Prune => match manager.prune() {
            Ok(ids) => {
                for id in ids {
                    println!("{id}");
                }
                0
            }
            Err(err) => report(err),
        },
    };
    ExitCode::from(code)
}

/// Runs `action` on each container, reporting each failure; returns the
/// code of the last failure, or 0.
fn for_each(containers: &[String], report: &mut impl FnMut(manager::Error) -> u8, mut action: impl FnMut(&str) -> manager::Result<()>) -> u8 {
    let mut code = 0;
    for container in containers {
        if let Err(err) = action(container) {
            code = report(err);
        }
    }
    code
}

/// `rm` exits as podman's does: 1 when a container was not found, 2 when
/// one is running (without -f), 125 for other failures.
fn rm(manager: &Manager, containers: &[String], force: bool, report: &mut impl FnMut(manager::Error) -> u8) -> u8 {
    let mut code = 0;
    for container in containers {
        match manager.remove(container, force) {
            Ok(id) => println!("{id}"),
            Err(err) => {
                let specific = match &err {
                    manager::Error::NotFound(_) => Some(1),
                    manager::Error::WrongState { .. } => Some(2),
                    _ => None,
                };
                let reported = report(err);
                code = specific.unwrap_or(reported);
            }
        }
    }
    code
}

fn ps(manager: &Manager, all: bool, quiet: bool, format: Format) -> manager::Result<()> {
    let mut rows = Vec::new();
    for listed in manager.list()? {
        match listed {
            Ok(info) if all || info.status.is_active() => rows.push(Ok(info)),
            Ok(_) => {}
            // A damaged record is listed, marked, with the reason.
            Err(manager::Error::CorruptRecord { id, message }) => rows.push(Err((id, message))),
            Err(err) => eprintln!("{PROGRAM}: {err}"),
        }
    }
    if quiet {
        for row in &rows {
            match row {
                Ok(info) => println!("{}", info.entry.record.id),
                Err((id, _)) => println!("{id}"),
            }
        }
        return Ok(());
    }
    if format == Format::Json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|row| match row {
                Ok(info) => serde_json::json!({
                    "id": info.entry.record.id,
                    "name": info.entry.record.name,
                    "status": info.status,
                    "pid": info.pid,
                    "exitCode": info.exit.as_ref().map(|e| e.exit_code),
                    "created": info.entry.record.created,
                    "command": info.entry.record.command,
                    "monitorAlive": info.monitor_alive,
                }),
                Err((id, message)) => serde_json::json!({ "id": id, "status": "damaged", "error": message }),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list).expect("JSON values serialise"));
        return Ok(());
    }
    println!("{:<14} {:<20} {:<12} {:<6} COMMAND", "CONTAINER ID", "NAME", "STATUS", "EXIT");
    for row in &rows {
        match row {
            Ok(info) => println!(
                "{:<14} {:<20} {:<12} {:<6} {}",
                &info.entry.record.id[..12],
                info.entry.record.name,
                info.status,
                match (&info.exit, info.status) {
                    (Some(exit), Status::Exited | Status::Restarting) => exit.exit_code.to_string(),
                    _ => String::from("-"),
                },
                info.entry.record.command.join(" ")
            ),
            Err((id, message)) => {
                println!("{:<14} {:<20} {:<12} {:<6} -", &id[..id.len().min(12)], "-", "damaged", "-");
                eprintln!("{PROGRAM}: record of container {id} is unreadable: {message}");
            }
        }
    }
    Ok(())
}

fn stats(manager: &Manager, containers: &[String], format: Format, report: &mut impl FnMut(manager::Error) -> u8) -> u8 {
    let mut samples = Vec::new();
    let code = for_each(containers, report, |c| manager.stats(c, Duration::from_millis(500)).map(|s| samples.push(s)));
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&samples).expect("stats serialise"));
        return code;
    }
    println!("{:<14} {:<20} {:>8} {:>12} {:>12} {:>6}", "CONTAINER ID", "NAME", "CPU %", "MEM USAGE", "MEM LIMIT", "PIDS");
    for sample in &samples {
        println!(
            "{:<14} {:<20} {:>7.2}% {:>12} {:>12} {:>6}",
            &sample.id[..12],
            sample.name,
            sample.cpu_percent,
            sample.memory_bytes,
            sample.memory_limit.map_or(String::from("-"), |l| l.to_string()),
            sample.pids
        );
    }
    code
}

/// Chooses the exit status of a failed command as podman does: 127 when the
/// container's program was not found, 126 when it could not be executed,
/// and 125 when conman itself failed, so that none of them is mistaken for
/// the program's own status.
fn failure_code(message: &str) -> u8 {
    if message.contains("executable file not found") || message.contains("no such file or directory") && message.contains("exec: ") {
        127
    } else if message.contains("exec: ") && message.contains("permission denied") {
        126
    } else {
        125
    }
}
