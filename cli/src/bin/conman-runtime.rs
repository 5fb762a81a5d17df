//! conman-runtime: an OCI runtime with runc's command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use conman_cli::logging::{LogFormat, Logger};
use runtime::{CreateOptions, Runtime};

const PROGRAM: &str = "conman-runtime";

#[derive(Parser)]
#[command(
    name = PROGRAM,
    about = "Run OCI containers: a drop-in replacement for runc",
    disable_version_flag = true
)]
struct Cli {
    /// Directory for container state (use a tmpfs, as the state must not
    /// outlive a reboot).
    /// [default: /run/conman-runtime, or $XDG_RUNTIME_DIR/conman-runtime
    /// when not run as root]
    #[arg(long, global = true)]
    root: Option<PathBuf>,

    /// Write log messages to this file instead of discarding them.
    #[arg(long, global = true)]
    log: Option<PathBuf>,

    /// Format of the log file.
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    log_format: LogFormat,

    /// Log debug messages too.
    #[arg(long, global = true)]
    debug: bool,

    /// Read linux.cgroupsPath as SLICE:PREFIX:NAME and place the container
    /// where systemd would put that scope. No systemd is contacted: the
    /// directories are made on the cgroupfs directly.
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,

    /// Print the version and the supported OCI runtime spec version.
    #[arg(short = 'v', long)]
    version: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args)]
struct CreateArgs {
    /// Path to the bundle directory, which contains config.json.
    #[arg(short = 'b', long, default_value = ".")]
    bundle: PathBuf,

    /// Unix socket to which the pty master is sent when process.terminal is
    /// true.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,

    /// File to which the container init's host pid is written.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,

    /// Move the rootfs over / and chroot instead of using pivot_root(2).
    #[arg(long = "no-pivot")]
    no_pivot: bool,

    /// Do not create a new session keyring for the container.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,

    /// Pass this many extra descriptors (3 onwards) to the container process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,

    /// Container id.
    id: String,
}

impl CreateArgs {
    fn options(&self, systemd_cgroup: bool) -> CreateOptions {
        CreateOptions {
            systemd_cgroup,
            bundle: self.bundle.clone(),
            console_socket: self.console_socket.clone(),
            pid_file: self.pid_file.clone(),
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            preserve_fds: self.preserve_fds,
            // runc has no --init: the container's program is its pid 1.
            reaper_init: false,
            no_reexec: false,
        }
    }
}

#[derive(clap::Args)]
struct ExecArgs {
    /// OCI process JSON file describing the process (replaces the command
    /// and the process flags).
    #[arg(short = 'p', long)]
    process: Option<PathBuf>,
    /// Give the process a pseudo-terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// Return once the process runs, without waiting for it.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Unix socket to which the pty master is sent.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// File to which the process's host pid is written.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Set an environment variable (KEY=VALUE); repeatable.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Working directory of the process, inside the container.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// User to run as: UID or UID:GID.
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Supplementary group id; repeatable.
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// Add a capability (CAP_NET_ADMIN or NET_ADMIN); repeatable.
    #[arg(short = 'c', long = "cap")]
    cap: Vec<String>,
    /// Set no_new_privs for the process.
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// AppArmor profile for the process (the host must have AppArmor).
    #[arg(short = 'a', long)]
    apparmor: Option<String>,
    /// SELinux label for the process (the host must have SELinux).
    #[arg(short = 'l', long = "process-label")]
    process_label: Option<String>,
    /// Pass this many extra descriptors (3 onwards) to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Exec even if the container is paused.
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    /// Sub-cgroup to run the process in (not supported yet: rejected).
    #[arg(long)]
    cgroup: Vec<String>,
    /// Container id.
    id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ListFormat {
    Table,
    Json,
}

#[derive(Subcommand)]
// Each subcommand's arguments are built only when that subcommand is
// invoked, because building all of them took most of the heap of a `run`.
#[command(defer = true)]
enum Command {
    /// Create a container; its process waits until `start`.
    Create(CreateArgs),
    /// Start the process of a created container.
    Start { id: String },
    /// Create, start and wait for a container, then delete it.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once the container runs, without waiting for it.
        #[arg(short = 'd', long)]
        detach: bool,
        /// Keep the stopped container (its state and cgroups) for `state`
        /// and `delete`, instead of deleting it when it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Print the OCI state of a container as JSON.
    State { id: String },
    /// List containers.
    List {
        /// Output format.
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: ListFormat,
        /// Print only the container ids.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Send a signal (default SIGTERM) to a container's init process.
    Kill {
        /// Send the signal to every process in the container's cgroup.
        #[arg(short = 'a', long)]
        all: bool,
        id: String,
        /// Signal name (KILL, SIGKILL) or number (9).
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container and everything the runtime made for it.
    Delete {
        /// Kill the container first if it is still running.
        #[arg(short = 'f', long)]
        force: bool,
        id: String,
    },
    /// Run a new process in a running container.
    Exec(ExecArgs),
    /// Freeze every process of a running container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// List the processes of a container.
    Ps {
        /// Output format: a `ps` table, or a JSON array of host pids.
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: ListFormat,
        id: String,
        /// Options passed to ps(1) for the table format (default: -ef),
        /// after the id as with runc (`ps ID -e -x`) or after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_options: Vec<String>,
    },
    /// Print the container's resource statistics and OOM events as JSON
    /// lines, until it stops.
    Events {
        /// Print the statistics once and exit.
        #[arg(long)]
        stats: bool,
        /// Time between two statistics lines (5s, 500ms, 1m).
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// Change the cgroup limits of a container.
    Update {
        /// OCI LinuxResources JSON file with the new limits; `-` reads it
        /// from standard input.
        #[arg(short = 'r', long)]
        resources: Option<PathBuf>,
        /// Memory limit in bytes (suffixes k, m, g allowed); -1 for none.
        #[arg(long, allow_hyphen_values = true)]
        memory: Option<String>,
        /// Memory plus swap limit in bytes; -1 for none.
        #[arg(long = "memory-swap", allow_hyphen_values = true)]
        memory_swap: Option<String>,
        /// Memory soft limit in bytes.
        #[arg(long = "memory-reservation", allow_hyphen_values = true)]
        memory_reservation: Option<String>,
        /// CPU shares (relative weight).
        #[arg(long = "cpu-share", alias = "cpu-shares")]
        cpu_shares: Option<u64>,
        /// CPU CFS quota in microseconds per period; -1 for none.
        #[arg(long = "cpu-quota", allow_hyphen_values = true)]
        cpu_quota: Option<i64>,
        /// CPU CFS period in microseconds.
        #[arg(long = "cpu-period")]
        cpu_period: Option<u64>,
        /// CPU real-time period in microseconds (cgroup v1 only).
        #[arg(long = "cpu-rt-period")]
        cpu_rt_period: Option<u64>,
        /// CPU real-time runtime in microseconds per real-time period
        /// (cgroup v1 only).
        #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
        cpu_rt_runtime: Option<i64>,
        /// CPUs the container may run on (0-3, 0,1).
        #[arg(long = "cpuset-cpus")]
        cpuset_cpus: Option<String>,
        /// Memory nodes the container may use.
        #[arg(long = "cpuset-mems")]
        cpuset_mems: Option<String>,
        /// Maximum number of processes; -1 or 0 for none.
        #[arg(long = "pids-limit", allow_hyphen_values = true)]
        pids_limit: Option<i64>,
        /// Block IO weight, 10 to 1000.
        #[arg(long = "blkio-weight")]
        blkio_weight: Option<u16>,
        id: String,
    },
    /// Write a default config.json into the bundle directory.
    Spec {
        /// Bundle directory in which config.json is written.
        #[arg(short = 'b', long, default_value = ".")]
        bundle: PathBuf,
        /// Write a configuration for running as an unprivileged user.
        #[arg(long)]
        rootless: bool,
    },
    /// Print the OCI features document: what this runtime implements.
    Features,
}

fn main() -> ExitCode {
    // Usage errors exit with 1, as runc's do (clap's default is 2).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { 1 } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    if cli.version {
        println!("{PROGRAM} version {}", env!("CARGO_PKG_VERSION"));
        println!("spec: {}", runtime::SPEC_VERSION);
        return ExitCode::SUCCESS;
    }
    // As runc does, warnings reach stderr when there is no log file: they
    // are the only report of a problem that does not fail the command.
    let mut logger = match Logger::init(cli.log.as_deref(), cli.log_format, cli.debug, Some(tracing::Level::WARN)) {
        Ok(logger) => logger,
        Err(message) => {
            eprintln!("{PROGRAM}: {message}");
            return ExitCode::from(1);
        }
    };
    let Some(command) = cli.command else {
        eprintln!("{PROGRAM}: no command given; run `{PROGRAM} --help` for the list");
        return ExitCode::from(1);
    };
    let root = cli.root.clone().unwrap_or_else(default_root);
    let runtime = Runtime::new(&root);
    // As runc: an exec that fails before its process runs exits with 255.
    let failure_code = if matches!(command, Command::Exec(_)) { 255 } else { 1 };
    match execute(&runtime, command, cli.systemd_cgroup) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(err) => {
            logger.fatal(PROGRAM, &err.to_string());
            ExitCode::from(failure_code)
        }
    }
}

/// Returns the state directory used when --root is not given: a tmpfs under /run for
/// root, the user's runtime directory for anyone else, as runc does.
fn default_root() -> PathBuf {
    // SAFETY: geteuid has no arguments and cannot fail.
    let rootless = unsafe { libc::geteuid() } != 0;
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| rootless && !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("conman-runtime"),
        None => PathBuf::from("/run/conman-runtime"),
    }
}

fn execute(runtime: &Runtime, command: Command, systemd_cgroup: bool) -> runtime::Result<i32> {
    match command {
        Command::Create(args) => {
            runtime.create(&args.id, &args.options(systemd_cgroup))?;
        }
        Command::Start { id } => runtime.start(&id)?,
        Command::Run { create, detach, keep } => {
            return runtime.run(&create.id, &create.options(systemd_cgroup), detach, keep)
        }
        Command::State { id } => {
            let state = runtime.state(&id)?;
            println!("{}", serde_json::to_string_pretty(&state).expect("state serialises"));
        }
        Command::List { format, quiet } => list(runtime, format, quiet)?,
        Command::Kill { all, id, signal } => {
            let signal = runtime::signal::parse(&signal)?;
            runtime.kill(&id, signal, all)?;
        }
        Command::Delete { force, id } => runtime.delete(&id, force)?,
        Command::Spec { bundle, rootless } => write_spec(&bundle, rootless)?,
        Command::Exec(args) => return exec(runtime, args),
        Command::Pause { id } => runtime.pause(&id)?,
        Command::Resume { id } => runtime.resume(&id)?,
        Command::Ps { format, id, ps_options } => ps(runtime, format, &id, &ps_options)?,
        Command::Events { stats, interval, id } => events(runtime, &id, stats, &interval)?,
        Command::Update {
            resources,
            memory,
            memory_swap,
            memory_reservation,
            cpu_shares,
            cpu_quota,
            cpu_period,
            cpu_rt_period,
            cpu_rt_runtime,
            cpuset_cpus,
            cpuset_mems,
            pids_limit,
            blkio_weight,
            id,
        } => {
            let mut value = match resources {
                Some(path) => read_resources(&path)?,
                None => serde_json::json!({}),
            };
            let mut set = |section: &str, key: &str, v: serde_json::Value| {
                if !value[section].is_object() {
                    value[section] = serde_json::json!({});
                }
                value[section][key] = v;
            };
            if let Some(v) = memory {
                set("memory", "limit", parse_bytes("--memory", &v)?.into());
            }
            if let Some(v) = memory_swap {
                set("memory", "swap", parse_bytes("--memory-swap", &v)?.into());
            }
            if let Some(v) = memory_reservation {
                set("memory", "reservation", parse_bytes("--memory-reservation", &v)?.into());
            }
            if let Some(v) = cpu_shares {
                set("cpu", "shares", v.into());
            }
            if let Some(v) = cpu_quota {
                set("cpu", "quota", v.into());
            }
            if let Some(v) = cpu_period {
                set("cpu", "period", v.into());
            }
            if let Some(v) = cpu_rt_period {
                set("cpu", "realtimePeriod", v.into());
            }
            if let Some(v) = cpu_rt_runtime {
                set("cpu", "realtimeRuntime", v.into());
            }
            if let Some(v) = cpuset_cpus {
                set("cpu", "cpus", v.into());
            }
            if let Some(v) = cpuset_mems {
                set("cpu", "mems", v.into());
            }
            if let Some(v) = pids_limit {
                set("pids", "limit", v.into());
            }
            if let Some(v) = blkio_weight {
                set("blockIO", "weight", v.into());
            }
            let resources: oci_spec::runtime::LinuxResources = serde_json::from_value(value)
                .map_err(|err| runtime::Error::InvalidArgument(format!("invalid resources: {err}")))?;
            runtime.update(&id, &resources)?;
        }
        Command::Features => {
            println!("{}", serde_json::to_string_pretty(&runtime::features::document()).expect("features serialise"));
        }
    }
    Ok(0)
}

fn list(runtime: &Runtime, format: ListFormat, quiet: bool) -> runtime::Result<()> {
    let mut states = Vec::new();
    for entry in runtime.list()? {
        match entry {
            Ok(state) => states.push(state),
            Err(err) => eprintln!("{PROGRAM}: {err}"),
        }
    }
    let mut out = std::io::stdout().lock();
    if quiet {
        for state in &states {
            let _ = writeln!(out, "{}", state.id);
        }
        return Ok(());
    }
    match format {
        ListFormat::Json => {
            let _ = writeln!(out, "{}", serde_json::to_string(&states).expect("states serialise"));
        }
        ListFormat::Table => {
            // Columns as wide as their widest value, like runc's table.
            let rows: Vec<[String; 6]> = states
                .iter()
                .map(|s| [s.id.clone(), s.pid.to_string(), s.status.to_string(), s.bundle.display().to_string(), s.created.clone(), s.owner.clone()])
                .collect();
            let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
            let mut widths = header.clone().map(|h| h.len());
            for row in &rows {
                for (width, cell) in widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.len());
                }
            }
            for row in std::iter::once(&header).chain(rows.iter()) {
                let cells: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
                let _ = writeln!(out, "{}", cells.join("   ").trim_end());
            }
        }
    }
    Ok(())
}

fn write_spec(bundle: &std::path::Path, rootless: bool) -> runtime::Result<()> {
    let path = bundle.join("config.json");
    // SAFETY: getuid and getgid have no arguments and always succeed.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let config = runtime::spec::default_config(rootless, uid, gid);
    let text = serde_json::to_string_pretty(&config).expect("config serialises") + "\n";
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|err| {
            if err.kind() == std::io::ErrorKind::AlreadyExists {
                runtime::Error::InvalidArgument(format!("{} already exists; remove it first", path.display()))
            } else {
                runtime::Error::io(format!("create {}", path.display()), err)
            }
        })?;
    file.write_all(text.as_bytes())
        .map_err(|err| runtime::Error::io(format!("write {}", path.display()), err))
}

fn read_resources(path: &std::path::Path) -> runtime::Result<serde_json::Value> {
    let text = if path == std::path::Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|err| runtime::Error::io("read resources from standard input", err))?;
        text
    } else {
        std::fs::read_to_string(path).map_err(|err| runtime::Error::io(format!("read {}", path.display()), err))?
    };
    serde_json::from_str(&text).map_err(|err| {
        runtime::Error::InvalidArgument(format!("invalid resources JSON in {}: {err}", path.display()))
    })
}

fn parse_bytes(flag: &str, text: &str) -> runtime::Result<i64> {
    conman_cli::units::parse_bytes(text).map_err(|message| runtime::Error::InvalidArgument(format!("{flag}: {message}")))
}

/// Prints the container's processes: a JSON array of pids, or the lines of
/// ps(1) output whose PID column is one of them.
fn ps(runtime: &Runtime, format: ListFormat, id: &str, options: &[String]) -> runtime::Result<()> {
    let pids = runtime.pids(id)?;
    if format == ListFormat::Json {
        println!("{}", serde_json::to_string(&pids).expect("pids serialise"));
        return Ok(());
    }
    let args: Vec<String> = if options.is_empty() { vec!["-ef".into()] } else { options.to_vec() };
    let output = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|err| runtime::Error::io("run ps", err))?;
    if !output.status.success() {
        return Err(runtime::Error::InvalidArgument(format!(
            "ps {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let column = header
        .split_whitespace()
        .position(|name| name == "PID")
        .ok_or_else(|| runtime::Error::InvalidArgument(format!("ps {} printed no PID column", args.join(" "))))?;
    println!("{header}");
    for line in lines {
        let pid = line.split_whitespace().nth(column).and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(())
}

fn exec(runtime: &Runtime, args: ExecArgs) -> runtime::Result<i32> {
    let invalid = |message: String| runtime::Error::InvalidArgument(message);
    if !args.cgroup.is_empty() {
        return Err(invalid("--cgroup is not supported yet: exec processes join the container's own cgroup".into()));
    }
    // Runtime::exec re-executes the runtime from a sealed copy of its
    // binary, which starts `main` again. Do it now, before --process is
    // read: a pipe (`-p <(...)`) can be read only once.
    runtime::sealed_exe::ensure()?;
    let process = match &args.process {
        Some(path) => {
            if !args.command.is_empty() {
                return Err(invalid("give either --process or a command, not both".into()));
            }
            let text = std::fs::read_to_string(path)
                .map_err(|err| runtime::Error::io(format!("read {}", path.display()), err))?;
            let mut value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|err| invalid(format!("{}: not valid JSON: {err}", path.display())))?;
            // As with runc, a process file without "user" runs as root:
            // the file describes one exec, not a container's whole config.
            if let Some(object) = value.as_object_mut() {
                object.entry("user").or_insert_with(|| serde_json::json!({ "uid": 0, "gid": 0 }));
            }
            serde_path_to_error::deserialize::<_, oci_spec::runtime::Process>(value).map_err(|err| {
                invalid(format!("{}: invalid value for \"{}\": {}", path.display(), err.path(), err.inner()))
            })?
        }
        None => {
            if args.command.is_empty() {
                return Err(invalid("exec needs a command after the container id, or --process FILE".into()));
            }
            let mut process = runtime::exec::default_process(runtime, &args.id)?;
            process.set_args(Some(args.command.clone()));
            process.set_terminal(Some(args.tty));
            let mut env = process.env().clone().unwrap_or_default();
            env.extend(args.env.iter().cloned());
            process.set_env(Some(env));
            if let Some(cwd) = &args.cwd {
                process.set_cwd(cwd.clone());
            }
            if let Some(user) = &args.user {
                let (uid, gid) = match user.split_once(':') {
                    Some((uid, gid)) => (uid, Some(gid)),
                    None => (user.as_str(), None),
                };
                let uid: u32 = uid.parse().map_err(|_| invalid(format!("--user \"{user}\": UID must be a number")))?;
                let mut spec_user = process.user().clone();
                spec_user.set_uid(uid);
                if let Some(gid) = gid {
                    let gid: u32 = gid.parse().map_err(|_| invalid(format!("--user \"{user}\": GID must be a number")))?;
                    spec_user.set_gid(gid);
                }
                process.set_user(spec_user);
            }
            if !args.additional_gids.is_empty() {
                let mut spec_user = process.user().clone();
                spec_user.set_additional_gids(Some(args.additional_gids.clone()));
                process.set_user(spec_user);
            }
            if !args.cap.is_empty() {
                let mut caps = process.capabilities().clone().unwrap_or_default();
                for name in &args.cap {
                    let cap: oci_spec::runtime::Capability = serde_json::from_value(serde_json::json!(name))
                        .map_err(|_| invalid(format!("--cap: unknown capability \"{name}\"")))?;
                    let add = |set: &Option<oci_spec::runtime::Capabilities>| {
                        let mut set = set.clone().unwrap_or_default();
                        set.insert(cap);
                        Some(set)
                    };
                    caps.set_bounding(add(caps.bounding()));
                    caps.set_effective(add(caps.effective()));
                    caps.set_permitted(add(caps.permitted()));
                }
                process.set_capabilities(Some(caps));
            }
            if args.no_new_privs {
                process.set_no_new_privileges(Some(true));
            }
            process
        }
    };
    let mut process = process;
    if let Some(profile) = args.apparmor.as_deref().filter(|p| !p.is_empty()) {
        process.set_apparmor_profile(Some(profile.to_owned()));
    }
    if let Some(label) = args.process_label.as_deref().filter(|l| !l.is_empty()) {
        process.set_selinux_label(Some(label.to_owned()));
    }
    let options = runtime::exec::ExecOptions {
        console_socket: args.console_socket.clone(),
        pid_file: args.pid_file.clone(),
        detach: args.detach,
        preserve_fds: args.preserve_fds,
        ignore_paused: args.ignore_paused,
    };
    runtime.exec(&args.id, &process, &options)
}

/// Parses a duration as runc's `--interval` takes it: one or more numbers
/// with units, `1m30s`, `500ms`, `2h`.
fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let mut total = 0f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "\u{b5}s" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    (total > 0.0).then(|| std::time::Duration::from_secs_f64(total))
}

/// `events`: statistics every interval, and an `oom` event as soon as the
/// kernel's OOM killer strikes in the container's memory cgroup.
fn events(runtime: &Runtime, id: &str, once: bool, interval: &str) -> runtime::Result<()> {
    use std::time::{Duration, Instant};
    let interval = parse_duration(interval).ok_or_else(|| {
        runtime::Error::InvalidArgument(format!(
            "--interval \"{interval}\" is not a duration (write it as 5s, 500ms or 1m)"
        ))
    })?;
    let cgroup = runtime.cgroup(id)?;
    /// One line of output. The fields are written in runc's order (type,
    /// id, data): a serde_json map would sort them, and scripts match the
    /// start of the line, such as `{"type":"oom","id":"ID"}`.
    #[derive(serde::Serialize)]
    struct Event<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<serde_json::Value>,
    }
    let print = |kind: &str, data: Option<serde_json::Value>| -> runtime::Result<()> {
        let event = serde_json::to_string(&Event { kind, id, data }).expect("event serialises");
        let mut out = std::io::stdout().lock();
        writeln!(out, "{event}")
            .and_then(|()| out.flush())
            .map_err(|err| runtime::Error::io("write to standard output", err))
    };
    let stats = |cgroup: &runtime::cgroups::Cgroup| serde_json::to_value(cgroup.stats()).expect("stats serialise");
    if once {
        return print("stats", Some(stats(&cgroup)));
    }
    // The OOM counter is polled: v1's eventfd notification has no v2
    // counterpart, and a poll every 100 ms finds a kill well within the
    // reporting interval on both.
    let mut oom_kills = cgroup.oom_kills();
    let mut next_stats = Instant::now();
    loop {
        let kills = cgroup.oom_kills();
        if kills > oom_kills {
            oom_kills = kills;
            print("oom", None)?;
        }
        let running = matches!(runtime.state(id), Ok(state) if state.status != runtime::state::Status::Stopped);
        if !running {
            return Ok(());
        }
        if Instant::now() >= next_stats {
            print("stats", Some(stats(&cgroup)))?;
            next_stats += interval;
        }
        std::thread::sleep(Duration::from_millis(100).min(interval));
    }
}
