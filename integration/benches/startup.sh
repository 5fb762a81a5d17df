#!/usr/bin/env bash
# Start-up benchmark: conman-runtime against runc and crun on one busybox
# bundle, plus the conman manager and a minimal C program as a lower bound.
#
# Usage: sudo integration/benches/startup.sh [--no-build] [--out DIR]
#
# Needs root, hyperfine, jq, gcc, file, GNU time (/usr/bin/time), a static
# /bin/busybox (Debian: busybox-static), and runc and crun in PATH. A runtime
# that fails a probe run is left out of the figures with the reason printed.
#
# Environment: RUNS (timed runs per command, default 50), WARMUP (untimed
# runs before each timed run, default 1), RSS_RUNS (default 10),
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
while [ $# -gt 0 ]; do
	case "$1" in
	--no-build) build=no ;;
	--out) out=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$self" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

RUNS=${RUNS:-50}
WARMUP=${WARMUP:-1}
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

if [ "$build" = yes ]; then
	(cd "$repo" && cargo build --release)
fi

mkdir -p "$out"
BENCH_WORK=$(mktemp -d /tmp/conman-bench.XXXXXX)
BENCH_PREFIX=cmb$$
BENCH_CRUN_FLAGS=
BENCH_CONMAN_RUNTIME=$BENCH_WORK/bin/conman-runtime
export BENCH_WORK BENCH_PREFIX BENCH_CONMAN_RUNTIME BENCH_CRUN_FLAGS
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

	# Deepest first, so that a parent cgroup is empty when it is removed.
	find /sys/fs/cgroup -depth -type d -name "${BENCH_PREFIX}-*" 2>/dev/null | while read -r dir; do
		echo "cleanup: removing leftover cgroup $dir" >&2
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
cp "$repo/target/release/conman-runtime" "$repo/target/release/conman" "$BENCH_WORK/bin/"

echo "work directory: $BENCH_WORK, container ids: ${BENCH_PREFIX}-*, results: $out"
load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v load="$load" 'BEGIN { exit !(load > 0.5) }'; then
	echo "warning: the 1-minute load average is $load; other work on the host makes the figures noisy" >&2
fi

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
make_bundle() { # name jq-filter
	mkdir -p "$BENCH_WORK/$1"
	jq --arg rootfs "$rootfs" ".process.terminal = false | .root.path = \$rootfs | $2" \
		"$BENCH_WORK/config.json" >"$BENCH_WORK/$1/config.json"
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
	echo "RUNS=$RUNS WARMUP=$WARMUP RSS_RUNS=$RSS_RUNS TP_CONTAINERS=$TP_CONTAINERS TP_ROUNDS=$TP_ROUNDS TP_PARALLEL=$TP_PARALLEL"
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

run_group() { # group
	echo "measuring: $1 (${RUNS} runs per command)"
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

# conman run --rm (the manager) against conman-runtime run.
for ((i = 1; i <= RUNS; i++)); do
	for name in $(rotate "$i" conman conman-runtime); do
		if [ "$name" = conman ]; then
			add_command conman "$(printf '%q ' "$conman" --root "$manager_root" run --rm --rootfs "$rootfs" -- /bin/true)"
		else
			add_command conman-runtime "$(rt_string conman-runtime run --bundle "$BENCH_WORK/bundle-true" "$(container_id manager conman-runtime "$i")")"
		fi
	done
done
run_group manager

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
	if libraries=$(ldd "$path" 2>/dev/null); then
		linking="dynamic: $(echo "$libraries" | grep -c '=>') shared libraries not counted"
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
	for group in run create start delete exec run-memory-limit; do
		echo "## $group"
		echo
		summarize_group "$out/$group.json" runc crun
		echo
	done
	echo "## manager"
	echo
	summarize_group "$out/manager.json" conman-runtime
	echo
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
leftover_cgroups=$(find /sys/fs/cgroup -type d -name "${BENCH_PREFIX}-*" 2>/dev/null || true)
if [ -n "$leftovers$leftover_cgroups" ]; then
	echo "left behind by the runs (removed at exit):" >&2
	echo "$leftovers$leftover_cgroups" >&2
fi
echo "results: $out"
