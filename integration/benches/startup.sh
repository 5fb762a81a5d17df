#!/usr/bin/env bash
# Start-up benchmark: conman-runtime against runc and crun on one busybox
# bundle, plus the conman manager and a minimal C program as a lower bound.
#
# Usage: sudo integration/benches/startup.sh [--no-build] [--out DIR]
#                                              [--cgroup-view host|v1]
#
# Needs root, hyperfine, jq, gcc, file, GNU time (/usr/bin/time), a static
# /bin/busybox (Debian: busybox-static), and runc and crun in PATH. A runtime
# that fails a probe run is left out of the figures with the reason printed.
# With podman and conmon installed, it also times `podman run --rm` and takes
# podman's seccomp profile for the seccomp group; without them, both are
# skipped.
#
# --cgroup-view v1, the default on a host that mounts cgroup v2 beside v1
# (hybrid), runs the whole benchmark in a private mount namespace in which
# /sys/fs/cgroup/unified is unmounted, because crun rejects hybrid hosts.
# Every runtime then finds the same cgroup v1 host. --cgroup-view host keeps
# the host's mounts.
#
# Environment: RUNS (timed runs per command, default 50), WARMUP (untimed
# runs before each timed run, default 1), PODMAN_RUNS (timed runs per
# command in the podman group, default 10), RSS_RUNS (default 10),
# TP_CONTAINERS (containers per throughput round, default 100), TP_ROUNDS
# (default 3), TP_PARALLEL (default 2).
#
# The figures go to DIR (default /tmp/conman-startup-<UTC time>): one
# hyperfine JSON file per group, rss.tsv, throughput.tsv, sizes.tsv, host.txt,
# probes.txt (runtimes whose probe run failed) and summary.md. Everything
# else lives in a temporary directory that is removed at exit, after every
# container left in it has been deleted.
set -euo pipefail

self=$(realpath "$0")
repo=$(realpath "$(dirname "$0")/../..")

# ---------------------------------------------------------------------------
# Runtime command lines. They read the BENCH_* variables, which the script
# exports so that the hidden `__prepare` mode (run by hyperfine) gets them too.

# Prints the command line of runtime $1, one word per line.
runtime_words() {
	case "$1" in
	conman-runtime) printf '%s\n' "$BENCH_CONMAN_RUNTIME" --root "$BENCH_WORK/state/conman-runtime" ;;
	runc) printf '%s\n' runc --root "$BENCH_WORK/state/runc" ;;
	crun) printf '%s\n' crun $BENCH_CRUN_FLAGS --root "$BENCH_WORK/state/crun" ;;
	*) echo "unknown runtime: $1" >&2; return 1 ;;
	esac
}

# Runs runtime $1 with the remaining arguments.
rt() {
	local name=$1
	shift
	local -a words
	mapfile -t words < <(runtime_words "$name")
	"${words[@]}" "$@"
}

# Prints runtime $1's command line followed by the remaining arguments as one
# string for hyperfine, which splits it into words itself (no shell with -N).
rt_string() {
	local name=$1
	shift
	local -a words
	mapfile -t words < <(runtime_words "$name")
	printf '%q ' "${words[@]}" "$@"
}

container_id() { # step runtime index
	echo "${BENCH_PREFIX}-$1-$2-$3"
}

wait_until_stopped() { # runtime id
	local status
	for _ in $(seq 500); do
		status=$(rt "$1" state "$2" | jq -r .status)
		[ "$status" = stopped ] && return 0
		sleep 0.01
	done
	echo "container $2 of $1 is still $status after 5 s" >&2
	return 1
}

# Sets up the container that the timed command of step $1 works on, after
# deleting the containers of this and the previous iteration, so that at most
# one container per runtime exists during the timed run.
# Stdio goes to a log file: a created container's init keeps the descriptors
# it inherits, and hyperfine must not wait for them to close.
prepare() { # step runtime index
	local step=$1 name=$2 index=$3
	local id
	id=$(container_id "$step" "$name" "$index")
	exec </dev/null >>"$BENCH_WORK/prepare.log" 2>&1

	rt "$name" delete -f "$(container_id "$step" "$name" $((index - 1)))" || true
	rt "$name" delete -f "$id" || true
	case "$step" in
	create) ;;
	start)
		rt "$name" create --bundle "$BENCH_WORK/bundle-true" "$id"
		;;
	delete)
		rt "$name" create --bundle "$BENCH_WORK/bundle-true" "$id"
		rt "$name" start "$id"
		wait_until_stopped "$name" "$id"
		;;
	*) echo "unknown step: $step" >&2; return 1 ;;
	esac
}

if [ "${1:-}" = __prepare ]; then
	shift
	prepare "$@"
	exit
fi

# ---------------------------------------------------------------------------
# Setup

build=yes
out=/tmp/conman-startup-$(date -u +%Y%m%dT%H%M%SZ)
cgroup_view=
original_args=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
	--no-build) build=no ;;
	--out) out=$2; shift ;;
	--cgroup-view)
		cgroup_view=$2
		case "$cgroup_view" in host | v1) ;; *) echo "--cgroup-view must be host or v1, not \"$cgroup_view\"" >&2; exit 2 ;; esac
		shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$self" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

RUNS=${RUNS:-50}
WARMUP=${WARMUP:-1}
PODMAN_RUNS=${PODMAN_RUNS:-10}
RSS_RUNS=${RSS_RUNS:-10}
TP_CONTAINERS=${TP_CONTAINERS:-100}
TP_ROUNDS=${TP_ROUNDS:-3}
TP_PARALLEL=${TP_PARALLEL:-2}

if [ "$(id -u)" != 0 ]; then
	echo "startup.sh must run as root: the runtimes create namespaces, mounts and cgroups" >&2
	exit 1
fi
for tool in hyperfine jq gcc file /usr/bin/time runc crun; do
	command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
if ! file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; then
	echo "/bin/busybox is missing or not static: install busybox-static" >&2
	exit 1
fi

# The cgroup v1 view: re-run this script in a private mount namespace, and
# there replace /sys/fs/cgroup by a private tmpfs with the host's cgroup v1
# hierarchies mounted again (the same hierarchies, found by their options)
# and no cgroup v2. The host's mounts do not change, and the directories
# that runtimes and podman make for controllers they do not find mounted
# land in the private tmpfs, not in the host's.
hybrid=no
if [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
	hybrid=yes
fi
if [ -z "$cgroup_view" ]; then
	if [ "$hybrid" = yes ]; then cgroup_view=v1; else cgroup_view=host; fi
fi
if [ "$cgroup_view" = v1 ] && [ "$hybrid" = yes ]; then
	if [ -z "${BENCH_IN_V1_VIEW:-}" ]; then
		exec unshare --mount --propagation private env BENCH_IN_V1_VIEW=1 "$self" "${original_args[@]}"
	fi
	controllers=" $(awk 'NR > 1 { printf "%s ", $1 }' /proc/cgroups)"
	v1_mounts=$(awk '{ for (i = 7; $i != "-"; i++); if ($(i + 1) == "cgroup") print $5, $(i + 3) }' /proc/self/mountinfo)
	umount --recursive /sys/fs/cgroup
	mount -t tmpfs -o mode=0755 conman-bench-cgroup-view /sys/fs/cgroup
	while read -r dir superoptions; do
		options=
		has_controller=no
		for option in ${superoptions//,/ }; do
			case "$option" in rw | ro | xattr) continue ;; esac
			[[ "$controllers" == *" $option "* ]] && has_controller=yes
			options+=${options:+,}$option
		done
		# A named hierarchy without controllers needs "none".
		[ "$has_controller" = yes ] || options=none,$options
		mkdir -p "$dir"
		mount -t cgroup -o "$options" cgroup "$dir"
	done <<<"$v1_mounts"
fi

if [ "$build" = yes ]; then
	(cd "$repo" && cargo build --release)
fi

mkdir -p "$out"
BENCH_WORK=$(mktemp -d /tmp/conman-bench.XXXXXX)
BENCH_PREFIX=cmb$$
BENCH_CRUN_FLAGS=
BENCH_CONMAN_RUNTIME=$BENCH_WORK/bin/conman-runtime
export BENCH_WORK BENCH_PREFIX BENCH_CONMAN_RUNTIME BENCH_CRUN_FLAGS
podman=()
podman_image=localhost/conman-bench-busybox:latest
conman=$BENCH_WORK/bin/conman
manager_root=$BENCH_WORK/state/conman
all_runtimes=(conman-runtime runc crun)

# Deletes every container left in the state directories, removes cgroups
# named after this run, then the work directory unless a mount is left in
# it. Runs at exit.
cleanup() {
	local status=$?
	set +e
	local name id dir
	for name in "${all_runtimes[@]}"; do
		for dir in "$BENCH_WORK/state/$name"/*/; do
			[ -d "$dir" ] || continue
			id=$(basename "$dir")
			echo "cleanup: deleting $name container $id" >&2
			rt "$name" delete -f "$id" >/dev/null 2>&1
		done
	done
	for dir in "$manager_root/runtime"/*/; do
		[ -d "$dir" ] || continue
		id=$(basename "$dir")
		echo "cleanup: deleting conman container $id" >&2
		"$BENCH_CONMAN_RUNTIME" --root "$manager_root/runtime" delete -f "$id" >/dev/null 2>&1
	done

	if [ ${#podman[@]} -gt 0 ]; then
		"${podman[@]}" rm -af -t 0 >/dev/null 2>&1
		"${podman[@]}" system reset -f >/dev/null 2>&1
	fi
	# podman's store mounts, then the state tmpfs. Any other mount under
	# the work directory was left by a runtime and is reported below.
	awk -v store="$BENCH_WORK/podman/" 'index($5, store) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r dir; do
		umount -l "$dir"
	done
	if mountpoint -q "$BENCH_WORK/state"; then
		umount "$BENCH_WORK/state"
	fi

	# Deepest first, so that a parent cgroup is empty when it is removed.
	# The podman group's --cgroup-parent, with the conmon cgroups that
	# podman leaves in it, is expected and removed without a report.
	find /sys/fs/cgroup -depth -type d -path "*/${BENCH_PREFIX}-*" 2>/dev/null | while read -r dir; do
		case "$dir" in
		*/"${BENCH_PREFIX}-podman" | */"${BENCH_PREFIX}-podman"/*) ;;
		*) echo "cleanup: removing leftover cgroup $dir" >&2 ;;
		esac
		rmdir "$dir"
	done

	local mounts
	mounts=$(awk -v work="$BENCH_WORK" 'index($5, work) == 1 { print $5 }' /proc/self/mountinfo)
	if [ -n "$mounts" ]; then
		echo "cleanup: mounts left under $BENCH_WORK, not removing it:" >&2
		echo "$mounts" >&2
	else
		rm -rf "$BENCH_WORK"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Copies of the binaries, so that a rebuild during the run changes nothing.
mkdir "$BENCH_WORK/bin"
release=$repo/target/$(uname -m)-unknown-linux-gnu/release
cp "$release/conman-runtime" "$release/conman" "$BENCH_WORK/bin/"

echo "work directory: $BENCH_WORK, container ids: ${BENCH_PREFIX}-*, results: $out"
load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v average="$load" 'BEGIN { exit !(average > 0.5) }'; then
	echo "warning: the 1-minute load average is $load; other work on the host makes the figures noisy" >&2
fi

# State directories on a tmpfs, as /run is on most hosts. On an ext4 /tmp,
# allocating inodes for the few state files of each container took about a
# fifth of the CPU samples of a conman-runtime `run` (perf record, 40 runs).
mkdir -p "$BENCH_WORK/state"
mount -t tmpfs -o mode=0711 conman-bench-state "$BENCH_WORK/state"

# The rootfs: busybox and one relative symlink per applet.
rootfs=$BENCH_WORK/rootfs
mkdir -p "$rootfs/bin" "$BENCH_WORK/state/"{conman-runtime,runc,crun} "$manager_root"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
	[ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
done

# The bundles share the rootfs through an absolute root.path (runc rejects a
# rootfs that is a symlink). config.json is conman-runtime's default spec.
(cd "$BENCH_WORK" && "$BENCH_CONMAN_RUNTIME" spec)
make_bundle() { # name jq-filter [jq-option...]
	local name=$1 filter=$2
	shift 2
	mkdir -p "$BENCH_WORK/$name"
	jq --arg rootfs "$rootfs" "$@" ".process.terminal = false | .root.path = \$rootfs | $filter" \
		"$BENCH_WORK/config.json" >"$BENCH_WORK/$name/config.json"
}
make_bundle bundle-true '.process.args = ["/bin/true"]'
make_bundle bundle-sleep '.process.args = ["/bin/sleep", "1000"]'
make_bundle bundle-memory '.process.args = ["/bin/true"] | .linux.resources.memory = {"limit": 268435456}'

floor=$BENCH_WORK/floor
gcc -O2 -Wall -Wextra -o "$floor" "$repo/integration/benches/floor.c"

# A probe run per runtime: one that fails is left out. crun 1.8.1 rejects
# cgroup v1 hybrid hosts, so it gets a second try without cgroup management.
runtimes=()
probe() { # runtime
	rt "$1" run --bundle "$BENCH_WORK/bundle-true" "${BENCH_PREFIX}-probe-$1" </dev/null 2>"$BENCH_WORK/probe.err" >/dev/null
}
: >"$out/probes.txt"
for name in "${all_runtimes[@]}"; do
	if probe "$name"; then
		runtimes+=("$name")
		continue
	fi
	reason=$(head -c 300 "$BENCH_WORK/probe.err")
	if [ "$name" = crun ]; then
		BENCH_CRUN_FLAGS=--cgroup-manager=disabled
		if probe crun; then
			echo "crun: plain run failed ($reason); measured with --cgroup-manager=disabled" | tee -a "$out/probes.txt"
			runtimes+=(crun)
			continue
		fi
		reason="$reason; with --cgroup-manager=disabled: $(head -c 300 "$BENCH_WORK/probe.err")"
		BENCH_CRUN_FLAGS=
	fi
	echo "$name: not measured, its probe run failed: $reason" | tee -a "$out/probes.txt"
done
echo "measured runtimes: ${runtimes[*]}"

# podman, when installed: its own store under the work directory, the rootfs
# imported as an image, and a wrapper runtime that keeps a copy of the
# config.json that podman generates, whose seccomp profile the seccomp group
# uses.
podman_config=$BENCH_WORK/podman/config.json
if command -v podman >/dev/null && command -v conmon >/dev/null; then
	mkdir -p "$BENCH_WORK/podman"
	podman=(podman --root "$BENCH_WORK/podman/root" --runroot "$BENCH_WORK/podman/runroot"
		--tmpdir "$BENCH_WORK/podman/tmp" --storage-driver overlay --cgroup-manager cgroupfs
		--events-backend file)
	# Root lacks CAP_SYS_RESOURCE on some VMs, so podman's default
	# RLIMIT_NOFILE and RLIMIT_NPROC of 1048576 could not be set there.
	podman_run=(run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024
		--cgroup-parent "/${BENCH_PREFIX}-podman")
	tar -C "$rootfs" -cf "$BENCH_WORK/podman/rootfs.tar" .
	"${podman[@]}" import "$BENCH_WORK/podman/rootfs.tar" "$podman_image" >/dev/null
	cat >"$BENCH_WORK/podman/keep-config" <<WRAPPER
#!/bin/sh
# Runs runc, keeping a copy of the config.json of each bundle it gets.
previous=
for arg in "\$@"; do
	if [ "\$previous" = --bundle ] || [ "\$previous" = -b ]; then
		cp "\$arg/config.json" "$podman_config"
	fi
	previous=\$arg
done
exec runc "\$@"
WRAPPER
	chmod +x "$BENCH_WORK/podman/keep-config"
	if ! "${podman[@]}" --runtime "$BENCH_WORK/podman/keep-config" "${podman_run[@]}" "$podman_image" /bin/true \
		</dev/null >/dev/null 2>"$BENCH_WORK/podman/probe.err" || [ ! -s "$podman_config" ]; then
		echo "podman: not measured, its probe run failed: $(head -c 300 "$BENCH_WORK/podman/probe.err")" | tee -a "$out/probes.txt"
		podman=()
	fi
else
	echo "podman: not measured, podman or conmon is not installed" | tee -a "$out/probes.txt"
fi
if [ -s "$podman_config" ] && [ "$(jq '.linux.seccomp != null' "$podman_config")" = true ]; then
	make_bundle bundle-seccomp \
		'.process.args = ["/bin/true"] | .linux.resources.memory = {"limit": 268435456} | .linux.seccomp = $podman[0].linux.seccomp' \
		--slurpfile podman "$podman_config"
fi

{
	echo "date: $(date -u)"
	echo "nproc: $(nproc)"
	echo "kernel: $(uname -r)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(grep -m1 'cpu MHz' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') MHz"
	echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "conman commit: $(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)')"
	echo "conman-runtime sha256: $(sha256sum "$BENCH_CONMAN_RUNTIME" | cut -c1-16)"
	echo "runc: $(runc --version | head -1)"
	echo "crun: $(crun --version | head -1) ${BENCH_CRUN_FLAGS}"
	echo "hyperfine: $(hyperfine --version)"
	echo "cgroup view: $cgroup_view (host is hybrid: $hybrid)"
	echo "podman: $(podman --version 2>/dev/null || echo none)"
	echo "RUNS=$RUNS WARMUP=$WARMUP PODMAN_RUNS=$PODMAN_RUNS RSS_RUNS=$RSS_RUNS TP_CONTAINERS=$TP_CONTAINERS TP_ROUNDS=$TP_ROUNDS TP_PARALLEL=$TP_PARALLEL"
} >"$out/host.txt"

# ---------------------------------------------------------------------------
# Timed groups. Every timed run is its own hyperfine command with one run,
# listed in the order conman-runtime, runc, crun, ... rotated by one per
# iteration, so the runtimes alternate run by run in one hyperfine process.
# -N runs the commands without a shell. hyperfine's --warmup repeats each
# command (with its prepare command) untimed just before the timed run, which
# the ids allow because each run or prepare deletes what the previous made.

# Builds the arguments of one command: hyperfine_args+=(-n NAME [-p PREP] CMD).
hyperfine_args=()
add_command() { # name command [prepare]
	hyperfine_args+=(-n "$1")
	[ -z "${3:-}" ] || hyperfine_args+=(-p "$3")
	hyperfine_args+=("$2")
}

run_group() { # group [runs per command]
	echo "measuring: $1 (${2:-$RUNS} runs per command)"
	if ! hyperfine -N --style none --runs 1 --warmup "$WARMUP" \
		--export-json "$out/$1.json" "${hyperfine_args[@]}"; then
		echo "hyperfine failed in group $1: a timed command or its prepare command failed; the end of the prepare log:" >&2
		tail -n 20 "$BENCH_WORK/prepare.log" >&2 || true
		exit 1
	fi
	hyperfine_args=()
}

# Prints the names in "$@" rotated left by $index.
rotate() { # index name...
	local index=$1
	shift
	local -a names=("$@")
	local count=${#names[@]} k
	for ((k = 0; k < count; k++)); do
		echo "${names[(index + k) % count]}"
	done
}

# run: create, start, wait and delete in one command.
for ((i = 1; i <= RUNS; i++)); do
	for name in $(rotate "$i" "${runtimes[@]}" floor); do
		if [ "$name" = floor ]; then
			add_command floor "$(printf '%q ' "$floor" "$rootfs" /bin/true)"
		else
			add_command "$name" "$(rt_string "$name" run --bundle "$BENCH_WORK/bundle-true" "$(container_id run "$name" "$i")")"
		fi
	done
done
run_group run

# create, start and delete, each timed alone.
for step in create start delete; do
	for ((i = 1; i <= RUNS; i++)); do
		for name in $(rotate "$i" "${runtimes[@]}"); do
			id=$(container_id "$step" "$name" "$i")
			case "$step" in
			create) command=$(rt_string "$name" create --bundle "$BENCH_WORK/bundle-true" "$id") ;;
			*) command=$(rt_string "$name" "$step" "$id") ;;
			esac
			add_command "$name" "$command" "$(printf '%q ' "$self" __prepare "$step" "$name" "$i")"
		done
	done
	run_group "$step"
	for name in "${runtimes[@]}"; do
		rt "$name" delete -f "$(container_id "$step" "$name" "$RUNS")" >/dev/null 2>&1 || true
	done
done

# exec of /bin/true into a container that runs `sleep 1000`.
# The detached container keeps the descriptors it inherits, so none of them
# is the terminal or a pipe of the caller.
for name in "${runtimes[@]}"; do
	if ! rt "$name" run --detach --bundle "$BENCH_WORK/bundle-sleep" "$(container_id exec "$name" 0)" \
		</dev/null >/dev/null 2>"$BENCH_WORK/detach.err"; then
		echo "$name run --detach failed: $(cat "$BENCH_WORK/detach.err")" >&2
		exit 1
	fi
done
for ((i = 1; i <= RUNS; i++)); do
	for name in $(rotate "$i" "${runtimes[@]}"); do
		add_command "$name" "$(rt_string "$name" exec "$(container_id exec "$name" 0)" /bin/true)"
	done
done
run_group exec
for name in "${runtimes[@]}"; do
	rt "$name" delete -f "$(container_id exec "$name" 0)" >/dev/null
done

# run with linux.resources.memory.limit = 256 MiB.
for ((i = 1; i <= RUNS; i++)); do
	for name in $(rotate "$i" "${runtimes[@]}"); do
		add_command "$name" "$(rt_string "$name" run --bundle "$BENCH_WORK/bundle-memory" "$(container_id memory "$name" "$i")")"
	done
done
run_group run-memory-limit

# run with podman's seccomp profile and the memory limit, as an engine
# configures a container.
if [ -e "$BENCH_WORK/bundle-seccomp/config.json" ]; then
	for ((i = 1; i <= RUNS; i++)); do
		for name in $(rotate "$i" "${runtimes[@]}"); do
			add_command "$name" "$(rt_string "$name" run --bundle "$BENCH_WORK/bundle-seccomp" "$(container_id seccomp "$name" "$i")")"
		done
	done
	run_group run-seccomp-memory-limit
fi

# conman run --rm (the manager) against conman-runtime run, of the bundle
# above and of a bundle with the config.json that conman generates itself
# (podman's capabilities and seccomp profile, a writable root). The
# difference between the last two is the manager's own work.
manager_id=$("$conman" --root "$manager_root" create --rootfs "$rootfs" -- /bin/true)
manager_config=$(ls "$manager_root"/containers/"$manager_id"*/config.json)
mkdir -p "$BENCH_WORK/bundle-conman"
jq --arg rootfs "$rootfs" '.root.path = $rootfs' "$manager_config" >"$BENCH_WORK/bundle-conman/config.json"
"$conman" --root "$manager_root" rm "$manager_id" >/dev/null
for ((i = 1; i <= RUNS; i++)); do
	for name in $(rotate "$i" conman conman-runtime conman-runtime-same-config); do
		case "$name" in
		conman) add_command conman "$(printf '%q ' "$conman" --root "$manager_root" run --rm --rootfs "$rootfs" -- /bin/true)" ;;
		conman-runtime) add_command conman-runtime "$(rt_string conman-runtime run --bundle "$BENCH_WORK/bundle-true" "$(container_id manager conman-runtime "$i")")" ;;
		*) add_command "$name" "$(rt_string conman-runtime run --bundle "$BENCH_WORK/bundle-conman" "$(container_id manager-config conman-runtime "$i")")" ;;
		esac
	done
done
run_group manager

# podman run --rm with each runtime, against conman run --rm.
if [ ${#podman[@]} -gt 0 ]; then
	podman_names=(conman)
	for name in "${runtimes[@]}"; do
		podman_names+=("podman-$name")
	done
	for ((i = 1; i <= PODMAN_RUNS; i++)); do
		for name in $(rotate "$i" "${podman_names[@]}"); do
			case "$name" in
			conman) add_command conman "$(printf '%q ' "$conman" --root "$manager_root" run --rm --rootfs "$rootfs" -- /bin/true)" ;;
			podman-conman-runtime) add_command "$name" "$(printf '%q ' "${podman[@]}" --runtime "$BENCH_CONMAN_RUNTIME" "${podman_run[@]}" "$podman_image" /bin/true)" ;;
			podman-*) add_command "$name" "$(printf '%q ' "${podman[@]}" --runtime "$(command -v "${name#podman-}")" "${podman_run[@]}" "$podman_image" /bin/true)" ;;
			esac
		done
	done
	run_group podman "$PODMAN_RUNS"
fi

# ---------------------------------------------------------------------------
# Peak RSS of `run`, and binary sizes.
#
# GNU time's %M is ru_maxrss from wait4(2): the largest peak RSS of the
# runtime process and of the descendants it reaped, which include the
# container's init before and after its execve of /bin/true.
echo "measuring: peak RSS (${RSS_RUNS} runs per command)"
printf 'name\tmax_rss_kib\n' >"$out/rss.tsv"
for ((i = 1; i <= RSS_RUNS; i++)); do
	for name in $(rotate "$i" "${runtimes[@]}" conman floor); do
		case "$name" in
		conman) command=("$conman" --root "$manager_root" run --rm --rootfs "$rootfs" -- /bin/true) ;;
		floor) command=("$floor" "$rootfs" /bin/true) ;;
		*) mapfile -t command < <(runtime_words "$name")
			command+=(run --bundle "$BENCH_WORK/bundle-true" "$(container_id rss "$name" "$i")") ;;
		esac
		/usr/bin/time -f %M -o "$BENCH_WORK/rss" "${command[@]}" </dev/null >/dev/null
		printf '%s\t%s\n' "$name" "$(cat "$BENCH_WORK/rss")" >>"$out/rss.tsv"
	done
done

printf 'name\tpath\tbytes\tlinking\n' >"$out/sizes.tsv"
for path in "$BENCH_CONMAN_RUNTIME" "$conman" "$(command -v runc)" "$(command -v crun)"; do
	path=$(realpath "$path")
	# ldd succeeds on a static PIE too, printing "statically linked".
	libraries=$(ldd "$path" 2>/dev/null | grep -c '=>' || true)
	if [ "$libraries" -gt 0 ]; then
		linking="dynamic: $libraries shared libraries not counted"
	else
		linking=static
	fi
	printf '%s\t%s\t%s\t%s\n' "$(basename "$path")" "$path" "$(stat -c %s "$path")" "$linking" >>"$out/sizes.tsv"
done

# ---------------------------------------------------------------------------
# Throughput: TP_CONTAINERS runs, TP_PARALLEL at a time, through xargs.
echo "measuring: throughput (${TP_ROUNDS} rounds of ${TP_CONTAINERS} containers, ${TP_PARALLEL} in parallel)"
printf 'name\tround\tcontainers\tseconds\tcontainers_per_second\n' >"$out/throughput.tsv"
for ((round = 1; round <= TP_ROUNDS; round++)); do
	for name in $(rotate "$round" "${runtimes[@]}" floor); do
		if [ "$name" = floor ]; then
			command=("$floor" "$rootfs" /bin/true)
		else
			mapfile -t command < <(runtime_words "$name")
			command+=(run --bundle "$BENCH_WORK/bundle-true" "${BENCH_PREFIX}-throughput-$name-$round-{}")
		fi
		# xargs -I runs the command once per input line, also when the
		# command (the floor's) contains no {}.
		start=$(date +%s%N)
		seq "$TP_CONTAINERS" | xargs -P "$TP_PARALLEL" -I{} "${command[@]}" >/dev/null
		end=$(date +%s%N)
		awk -v name="$name" -v round="$round" -v n="$TP_CONTAINERS" -v ns=$((end - start)) \
			'BEGIN { s = ns / 1e9; printf "%s\t%d\t%d\t%.3f\t%.1f\n", name, round, n, s, n / s }' >>"$out/throughput.tsv"
	done
done

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/host.txt"

# ---------------------------------------------------------------------------
# Summary: medians in milliseconds, min-max, and ratios of medians.

# Reads one hyperfine JSON file and prints a markdown table with one ratio
# column (median / median of that command) per reference command that the
# file contains.
summarize_group() { # file reference...
	local file=$1
	shift
	jq -r --args '
		def median: sort | if length % 2 == 1 then .[length / 2 | floor]
			else (.[length / 2 - 1] + .[length / 2]) / 2 end;
		def ms: . * 10000 | round / 10;
		[.results[] | {name: .command, time: .times[0]}]
		| group_by(.name)
		| map({name: .[0].name, runs: length, median: (map(.time) | median),
			min: (map(.time) | min), max: (map(.time) | max)})
		| . as $rows
		| [$ARGS.positional[] as $ref | $rows[] | select(.name == $ref)] as $refs
		| "| command | runs | median ms | min–max ms |" + ($refs | map(" ÷ \(.name) |") | add // ""),
		  "|---|---:|---:|---:|" + ($refs | map("---:|") | add // ""),
		  (sort_by(.median)[] | . as $row
			| "| \(.name) | \(.runs) | \(.median | ms) | \(.min | ms)–\(.max | ms) |"
			+ ($refs | map(" \($row.median / .median * 100 | round / 100) |") | add // ""))
	' "$@" <"$file"
}

# Prints a markdown table of median, min and max of column $3 per name.
summarize_tsv() { # file header column
	echo "| command | n | median $2 | min–max $2 |"
	echo "|---|---:|---:|---:|"
	tail -n +2 "$1" | cut -f1,"$3" | sort -k1,1 -k2,2g | awk -F'\t' '
		{ values[$1] = values[$1] " " $2; count[$1]++ }
		END {
			for (name in values) {
				n = split(substr(values[name], 2), v, " ")
				median = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
				printf "| %s | %d | %g | %g–%g |\n", name, n, median, v[1], v[n]
			}
		}' | sort
}

{
	echo "# Start-up figures"
	echo
	sed 's/^/    /' "$out/host.txt"
	echo
	if [ -s "$out/probes.txt" ]; then
		sed 's/^/    /' "$out/probes.txt"
		echo
	fi
	for group in run create start delete exec run-memory-limit run-seccomp-memory-limit; do
		[ -e "$out/$group.json" ] || continue
		echo "## $group"
		echo
		summarize_group "$out/$group.json" runc crun
		echo
	done
	echo "## manager"
	echo
	summarize_group "$out/manager.json" conman-runtime conman-runtime-same-config
	echo
	if [ -e "$out/podman.json" ]; then
		echo "## podman"
		echo
		summarize_group "$out/podman.json" conman podman-crun
		echo
	fi
	echo "## peak RSS of run"
	echo
	summarize_tsv "$out/rss.tsv" KiB 2
	echo
	echo "## throughput, ${TP_PARALLEL} in parallel"
	echo
	summarize_tsv "$out/throughput.tsv" containers/s 5
	echo
	echo "## binary sizes"
	echo
	echo "| binary | bytes | linking |"
	echo "|---|---:|---|"
	tail -n +2 "$out/sizes.tsv" | awk -F'\t' '{ printf "| %s | %s | %s |\n", $1, $3, $4 }'
} >"$out/summary.md"

cat "$out/summary.md"

# Every runtime must have deleted its containers: report what is left before
# the cleanup at exit removes it.
leftovers=$(ls -d "$BENCH_WORK/state/"{conman-runtime,runc,crun}/*/ "$manager_root/"{runtime,containers}/*/ 2>/dev/null || true)
leftover_cgroups=$(find /sys/fs/cgroup -type d -name "${BENCH_PREFIX}-*" ! -name "${BENCH_PREFIX}-podman" 2>/dev/null || true)
if [ -n "$leftovers$leftover_cgroups" ]; then
	echo "left behind by the runs (removed at exit):" >&2
	echo "$leftovers$leftover_cgroups" >&2
fi
echo "results: $out"
