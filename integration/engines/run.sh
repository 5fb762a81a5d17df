#!/usr/bin/env bash
# Drives real container engines with conman-runtime and, as the reference,
# with runc, through the same scenarios, and prints one PASS/FAIL line per
# engine, scenario and runtime, then a summary.
#
#   integration/engines/run.sh [podman|containerd|docker|all]   (default: podman)
#
# Needs root, a release build
# (target/ARCH-unknown-linux-gnu/release/conman-runtime, or the binary
# named by CONMAN_RUNTIME), runc and a static /bin/busybox. Each engine
# also needs its Debian packages: podman and conmon, containerd, or
# docker.io.
# Every daemon and store lives under one temporary directory with its own
# sockets, and is stopped and removed at the end; set KEEP=1 to keep that
# directory with the logs. Containers get no network (`--network none`).
#
# Exit status: 1 when a scenario passes with runc but fails with
# conman-runtime, or when an engine cannot be set up; 0 otherwise.
# Each runtime call the engines make is recorded by a wrapper script in
# WORK/calls-ENGINE-RUNTIME.log.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
conman_bin=${CONMAN_RUNTIME:-$repo/target/$(uname -m)-unknown-linux-gnu/release/conman-runtime}
runc_bin=${RUNC:-$(command -v runc || true)}

engines_arg=${1:-podman}
case "$engines_arg" in
    podman | containerd | docker) engines=("$engines_arg") ;;
    all) engines=(podman containerd docker) ;;
    *)
        echo "usage: $0 [podman|containerd|docker|all]" >&2
        exit 2
        ;;
esac

if [ "$(id -u)" -ne 0 ]; then
    echo "$0: must run as root (the engines create real containers)" >&2
    exit 1
fi
for f in "$conman_bin" "$runc_bin" /bin/busybox; do
    if [ ! -x "$f" ]; then
        echo "$0: $f is missing; build with 'cargo build --release' and install runc and busybox-static" >&2
        exit 1
    fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/conman-engines.XXXXXX")
chmod 755 "$WORK"
IMAGE=localhost/conman-busybox:latest

# shellcheck source=image.sh
source "$here/image.sh"
# shellcheck source=scenarios.sh
source "$here/scenarios.sh"
# shellcheck source=podman.sh
source "$here/podman.sh"
# shellcheck source=containerd.sh
source "$here/containerd.sh"
# shellcheck source=docker.sh
source "$here/docker.sh"

# Cleanup steps, run in reverse order at exit.
cleanups=()
on_exit() {
    local i
    for ((i = ${#cleanups[@]} - 1; i >= 0; i--)); do
        eval "${cleanups[i]}" || true
    done
    if [ "${KEEP:-0}" = 1 ]; then
        echo "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# make_wrapper NAME REAL LOG [DIR]: WORK/wrappers/DIR/NAME (DIR defaults to
# NAME), a script that appends its arguments and exit status to LOG and
# runs REAL with them. The file keeps the runtime's name, because engines
# treat runtimes they know by name differently (podman has conmon pass
# --log-format=json --log FILE only to runc and crun).
make_wrapper() {
    local name=$1 real=$2 log=$3 dir=$WORK/wrappers/${4:-$1}
    mkdir -p "$dir"
    cat > "$dir/$name" <<EOF
#!/bin/sh
echo "[\$\$] \$*" >> '$log'
'$real' "\$@"
rc=\$?
echo "[\$\$] exit \$rc" >> '$log'
exit \$rc
EOF
    chmod 755 "$dir/$name"
    echo "$dir/$name"
}

# unmount_under DIR: lazily unmounts every mount below DIR, deepest first:
# what an engine's store leaves mounted (overlay layers, shm).
unmount_under() {
    grep -F " $1/" /proc/self/mountinfo | cut -d' ' -f5 | sort -r | while read -r m; do
        umount -l "$m"
    done
}

# stop_daemon PID: sends SIGTERM to an engine daemon this script started,
# and waits for it. An empty PID does nothing.
stop_daemon() {
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    return 0
}

# remove_cgroup_parent NAME: removes the empty cgroup directory NAME, and
# the empty directories below it, from the top of every hierarchy. The
# engines create such a parent for their containers and leave it behind.
remove_cgroup_parent() {
    local dir
    for dir in /sys/fs/cgroup/*/"$1" /sys/fs/cgroup/"$1"; do
        [ -d "$dir" ] && find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    return 0
}

expect_eq() {
    local expected=$1 actual=$2 what=${3:-output}
    if [ "$expected" = "$actual" ]; then
        return 0
    fi
    printf 'FAIL: %s: expected [%s], got [%s]\n' "$what" "$expected" "$actual"
    return 1
}

expect_contains() {
    local haystack=$1 needle=$2 what=${3:-output}
    if grep -qF -- "$needle" <<<"$haystack"; then
        return 0
    fi
    printf 'FAIL: %s: [%s] not found in the output\n' "$what" "$needle"
    return 1
}

expect_match() {
    local text=$1 regex=$2 what=${3:-output}
    if grep -qE -- "$regex" <<<"$text"; then
        return 0
    fi
    printf 'FAIL: %s: [%s] does not match /%s/\n' "$what" "$text" "$regex"
    return 1
}

declare -A result
declare -A seconds
regressions=0
setup_failures=0
passed=0
failed=0

# run_scenario ENGINE NAME RUNTIME: runs ENGINE_sc_NAME, or the shared
# sc_NAME when the engine has no scenario of its own, with the engine
# already set up for RUNTIME. Records PASS or FAIL and prints the result
# line, and after a failure the end of the scenario's log.
run_scenario() {
    local engine=$1 name=$2 rt=$3 log start status
    log=$WORK/logs/$engine-$name-$rt.log
    mkdir -p "$WORK/logs"
    start=$(date +%s)
    local fn=sc_$name
    if declare -F "${engine}_sc_$name" >/dev/null; then
        fn=${engine}_sc_$name
    fi
    ( set +e; "$fn" ) > "$log" 2>&1 < /dev/null
    status=$?
    seconds[$engine/$name/$rt]=$(( $(date +%s) - start ))
    if [ "$status" -eq 0 ]; then
        result[$engine/$name/$rt]=PASS
        passed=$((passed + 1))
    else
        result[$engine/$name/$rt]=FAIL
        failed=$((failed + 1))
    fi
    printf '%-4s %-10s %-18s %-14s (%ss)\n' "${result[$engine/$name/$rt]}" "$engine" "$name" "$rt" \
        "${seconds[$engine/$name/$rt]}"
    if [ "$status" -ne 0 ]; then
        tail -n 12 "$log" | sed 's/^/    | /'
    fi
}

# run_engine ENGINE: sets the engine up, runs its scenarios with runc and
# then with conman-runtime, and tears it down.
run_engine() {
    local engine=$1 rt name scenarios
    ENGINE=$engine
    if ! "${engine}_setup" > "$WORK/logs/$engine-setup.log" 2>&1; then
        echo "SETUP FAILED: $engine (log follows)"
        tail -n 20 "$WORK/logs/$engine-setup.log" | sed 's/^/    | /'
        setup_failures=$((setup_failures + 1))
        return
    fi
    eval "scenarios=(\"\${${engine}_scenarios[@]}\")"
    for rt in runc conman-runtime; do
        "${engine}_use_runtime" "$rt"
        for name in "${scenarios[@]}"; do
            run_scenario "$engine" "$name" "$rt"
        done
    done
    for name in "${scenarios[@]}"; do
        if [ "${result[$engine/$name/runc]}" = PASS ] && [ "${result[$engine/$name/conman-runtime]}" = FAIL ]; then
            regressions=$((regressions + 1))
        fi
    done
}

mkdir -p "$WORK/logs"
build_rootfs_tar "$WORK/busybox-rootfs.tar"

for engine in "${engines[@]}"; do
    run_engine "$engine"
done

echo
echo "summary (runc | conman-runtime):"
for engine in "${engines[@]}"; do
    eval "scenarios=(\"\${${engine}_scenarios[@]}\")"
    for name in "${scenarios[@]}"; do
        [ -n "${result[$engine/$name/runc]:-}" ] || continue
        printf '  %-10s %-18s %-4s | %-4s\n' "$engine" "$name" "${result[$engine/$name/runc]}" \
            "${result[$engine/$name/conman-runtime]:-n/a}"
    done
done
echo "engine scenarios: $passed passed, $failed failed; $regressions pass with runc but fail with conman-runtime; $setup_failures engine setups failed"

# The same outcome as a cargo-style line, which scripts/test adds to its
# totals: conman-runtime's passes, its failures where runc passes, and as
# "ignored" the scenarios that fail with runc too (a host or engine
# problem, not a runtime one).
ours_passed=0
ours_ignored=0
for engine in "${engines[@]}"; do
    eval "scenarios=(\"\${${engine}_scenarios[@]}\")"
    for name in "${scenarios[@]}"; do
        case "${result[$engine/$name/runc]:-}/${result[$engine/$name/conman-runtime]:-}" in
            */PASS) ours_passed=$((ours_passed + 1)) ;;
            FAIL/FAIL) ours_ignored=$((ours_ignored + 1)) ;;
        esac
    done
done
verdict=ok
if [ "$regressions" -gt 0 ] || [ "$setup_failures" -gt 0 ]; then
    verdict=FAILED
fi
echo "test result: $verdict. $ours_passed passed; $((regressions + setup_failures)) failed; $ours_ignored ignored (engine scenarios with conman-runtime)"
if [ "$regressions" -gt 0 ] || [ "$setup_failures" -gt 0 ]; then
    exit 1
fi
exit 0
