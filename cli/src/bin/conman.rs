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

#[derive(Subcommand)]
enum Command {
    /// Run a command in a new container and wait for it.
    Run {
        /// Remove the container's record when it exits.
        #[arg(long)]
        rm: bool,
        /// Name of the container (default: its short id).
        #[arg(long)]
        name: Option<String>,
        /// Directory to use as the container's root filesystem. Without it,
        /// the container sees the host's programs and libraries read-only.
        #[arg(long)]
        rootfs: Option<PathBuf>,
        /// Command and arguments, after `--`.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// List containers.
    Ps,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut logger = match Logger::init(cli.log.as_deref(), LogFormat::Text, cli.debug) {
        Ok(logger) => logger,
        Err(message) => {
            eprintln!("{PROGRAM}: {message}");
            return ExitCode::from(125);
        }
    };
    let manager = Manager::new(&cli.root);
    let result = match cli.command {
        Command::Run { rm, name, rootfs, command } => manager.run(&RunOptions {
            name,
            rootfs: rootfs.map_or(RootfsSource::Host, RootfsSource::Directory),
            remove: rm,
            args: command,
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
