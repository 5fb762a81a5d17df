//! conman: a daemonless container manager.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use conman_cli::logging::{LogFormat, Logger};
use manager::{Manager, RootfsSource, RunOptions};

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

/// Flags of `run` that change the container's configuration.
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
    #[arg(long, default_value = "none")]
    network: String,
    /// Security options; supported: `seccomp=FILE` and `seccomp=unconfined`
    /// (default: podman's profile from /usr/share/containers/seccomp.json).
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
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
        let host_network = match self.network.as_str() {
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
        Ok(manager::spec::Settings {
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

#[derive(Subcommand)]
enum Command {
    /// Run a command in a new container and wait for it.
    Run {
        /// Remove the container's record when it exits.
        #[arg(long)]
        rm: bool,
        /// Name of the container (default: its short id).
        #[arg(long, allow_hyphen_values = true)]
        name: Option<String>,
        /// Directory to use as the container's root filesystem. Without it,
        /// the container gets the host's programs and libraries read-only.
        #[arg(long)]
        rootfs: Option<PathBuf>,
        #[command(flatten)]
        settings: SettingsArgs,
        /// Command and arguments, after `--`.
        #[arg(required = true, trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// List containers.
    Ps,
}

fn main() -> ExitCode {
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
    let mut logger = match Logger::init(cli.log.as_deref(), LogFormat::Text, cli.debug) {
        Ok(logger) => logger,
        Err(message) => {
            eprintln!("{PROGRAM}: {message}");
            return ExitCode::from(125);
        }
    };
    if matches!(cli.command, Command::Run { .. }) {
        // The runtime would otherwise re-execute this process from a sealed
        // copy of its binary in the middle of `run`, after the store changed.
        if let Err(err) = runtime::sealed_exe::ensure() {
            logger.fatal(PROGRAM, &err.to_string());
            return ExitCode::from(125);
        }
    }
    let manager = Manager::new(&cli.root);
    let result = match cli.command {
        Command::Run { rm, name, rootfs, settings, command } => settings.into_settings().and_then(|settings| {
            manager.run(&RunOptions {
                name,
                rootfs: rootfs.map_or(RootfsSource::Host, RootfsSource::Directory),
                remove: rm,
                args: command,
                settings,
            })
        }),
        Command::Ps => ps(&manager).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(err) => {
            let message = err.to_string();
            logger.fatal(PROGRAM, &message);
            ExitCode::from(failure_code(&message))
        }
    }
}

fn ps(manager: &Manager) -> manager::Result<()> {
    println!("{:<14} {:<20} {:<10} {:<6} COMMAND", "CONTAINER ID", "NAME", "STATUS", "EXIT");
    for record in manager.list()? {
        match record {
            Ok(record) => println!(
                "{:<14} {:<20} {:<10} {:<6} {}",
                &record.id[..12],
                record.name,
                record.status,
                record.exit_code.map_or(String::from("-"), |c| c.to_string()),
                record.command.join(" ")
            ),
            Err(err) => eprintln!("{PROGRAM}: {err}"),
        }
    }
    Ok(())
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
