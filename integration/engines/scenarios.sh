# Scenarios shared by podman and docker, whose command lines agree on
# everything used here. Each scenario is a function sc_NAME that drives the
# engine through `E` (the engine's command with its private state flags),
# adds "${RUN_OPTS[@]}" to every `run`, and returns 0 when the output is as
# expected. Everything it prints goes to the scenario's log file.
# Sourced by run.sh; the engine's NAME_use_runtime sets E, ECMD, RUN_OPTS,
# RM_FORCE, RT, RUNTIME_STATE_DIR and UPDATE_PIDS_LIMIT,
# and run.sh sets IMAGE, WORK and ENGINE.

SCENARIOS_CLI=(echo exit_codes env_workdir_user read_only mounts limits
    detach_exec_stop tty exec_tty hostname cap_drop_all seccomp logs pause
    stats update loop20)

sc_echo() {
    local out
    out=$(E run --rm "${RUN_OPTS[@]}" "$IMAGE" echo hello from busybox) || return 1
    expect_eq "hello from busybox" "$out"
}

sc_exit_codes() {
    local rc ok=0
    E run --rm "${RUN_OPTS[@]}" "$IMAGE" sh -c 'exit 42'
    rc=$?
    expect_eq 42 "$rc" "exit 42" || ok=1
    E run --rm "${RUN_OPTS[@]}" "$IMAGE" /no/such/program
    rc=$?
    expect_eq 127 "$rc" "missing executable" || ok=1
    E run --rm "${RUN_OPTS[@]}" "$IMAGE" /etc/passwd
    rc=$?
    expect_eq 126 "$rc" "file without execute permission" || ok=1
    return $ok
}

sc_env_workdir_user() {
    local out
    out=$(E run --rm "${RUN_OPTS[@]}" -e GREETING=hi -w /tmp -u 1000:1000 "$IMAGE" \
        sh -c 'echo "$GREETING $(pwd) $(id -u):$(id -g)"') || return 1
    expect_eq "hi /tmp 1000:1000" "$out"
}

sc_read_only() {
    local out
    out=$(E run --rm "${RUN_OPTS[@]}" --read-only "$IMAGE" \
        sh -c 'touch /probe 2>&1; echo "touch exit $?"')
    echo "$out"
    expect_contains "$out" "Read-only file system" && expect_contains "$out" "touch exit 1"
}

# make_mount_share DIR: a read-only source with a greeting and an empty
# read-write one, for the mount scenarios.
make_mount_share() {
    mkdir -p "$1/ro" "$1/rw"
    echo "from the host" > "$1/ro/greeting"
    rm -f "$1/rw/written"
}

# The script that the mount scenarios run in the container, with a tmpfs at
# /scratch, the read-only share at /data and the read-write one at /out.
MOUNTS_PROBE='
            grep " /scratch " /proc/mounts | cut -d" " -f3,4
            cat /data/greeting
            touch /data/new 2>/dev/null && echo "ro bind writable" || echo "ro bind rejects writes"
            echo "from the container" > /out/written'

# expect_mounts OUTPUT SHARE: checks the output of MOUNTS_PROBE and the file
# it wrote into the share.
expect_mounts() {
    local out=$1 share=$2 ok=0
    echo "$out"
    expect_contains "$out" "tmpfs rw," "tmpfs at /scratch" || ok=1
    expect_contains "$out" "size=1024k" "tmpfs size option" || ok=1
    expect_contains "$out" "from the host" "read-only bind content" || ok=1
    expect_contains "$out" "ro bind rejects writes" || ok=1
    expect_eq "from the container" "$(cat "$share/rw/written" 2>/dev/null)" "read-write bind" || ok=1
    return $ok
}

sc_mounts() {
    local share=$WORK/share-$RT out
    make_mount_share "$share"
    out=$(E run --rm "${RUN_OPTS[@]}" --tmpfs /scratch:size=1m \
        -v "$share/ro:/data:ro" -v "$share/rw:/out" "$IMAGE" sh -c "$MOUNTS_PROBE") || return 1
    expect_mounts "$out" "$share"
}

# Reads the limits through the container's own /sys/fs/cgroup: the v1
# files on v1 and hybrid hosts, the v2 ones on a pure v2 host.
sc_limits() {
    local out
    out=$(E run --rm "${RUN_OPTS[@]}" -m 64m --pids-limit 50 "$IMAGE" sh -c '
        cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max
        cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max') || return 1
    expect_eq "67108864
50" "$out"
}

# The init traps SIGTERM and exits 3, so `stop` must end it with SIGTERM
# well inside the 10 second grace period, not with the SIGKILL after it.
sc_detach_exec_stop() {
    local id out rc ok=0 start elapsed
    id=$(E run -d "${RUN_OPTS[@]}" "$IMAGE" \
        sh -c 'trap "exit 3" TERM; while :; do sleep 1; done') || return 1
    echo "container $id"
    out=$(E exec "$id" echo exec works)
    expect_eq "exec works" "$out" "exec output" || ok=1
    E exec "$id" sh -c 'exit 7'
    rc=$?
    expect_eq 7 "$rc" "exec exit code" || ok=1
    out=$(E exec "$id" cat /proc/1/cmdline | tr '\0' ' ')
    expect_contains "$out" "trap" "exec sees the init as pid 1" || ok=1
    start=$(date +%s)
    E stop -t 10 "$id" || ok=1
    elapsed=$(( $(date +%s) - start ))
    echo "stop took ${elapsed}s"
    [ "$elapsed" -lt 8 ] || { echo "FAIL: stop waited for the grace period"; ok=1; }
    expect_eq 3 "$(E inspect -f '{{.State.ExitCode}}' "$id")" "exit code after stop" || ok=1
    E rm "$id" || ok=1
    if "${ENGINE}_list_ids" | grep -q "$id"; then
        echo "FAIL: container still listed after rm"
        ok=1
    fi
    return $ok
}

# `script` gives the engine a real terminal of 31 rows and 97 columns, and
# the container must get a pty of its own with that size. The engines pass
# no consoleSize and resize the pty only after the process has started, so
# the container waits a second before reading the size.
sc_tty() {
    local cmd out
    cmd="stty rows 31 cols 97; $(printf '%q ' "${ECMD[@]}" run -it --rm "${RUN_OPTS[@]}" "$IMAGE" sh -c "tty; sleep 1; stty size")"
    out=$(sleep 3 | timeout 60 script -qec "$cmd" /dev/null | tr -d '\r')
    echo "$out"
    expect_contains "$out" "/dev/pts/0" "tty inside" && expect_contains "$out" "31 97" "terminal size"
}

# `exec -it` into a detached container: the runtime's `exec --tty
# --console-socket` must hand the engine a pty, which the engine resizes to
# the terminal's size.
sc_exec_tty() {
    local id cmd out ok=0
    id=$(E run -d "${RUN_OPTS[@]}" "$IMAGE" sleep 300) || return 1
    cmd="stty rows 29 cols 83; $(printf '%q ' "${ECMD[@]}" exec -it "$id" sh -c "tty; sleep 1; stty size")"
    out=$(sleep 3 | timeout 60 script -qec "$cmd" /dev/null | tr -d '\r')
    echo "$out"
    expect_match "$out" '^/dev/pts/[0-9]+$' "tty inside" || ok=1
    expect_contains "$out" "29 83" "terminal size" || ok=1
    E "${RM_FORCE[@]}" "$id" >/dev/null || ok=1
    return $ok
}

sc_hostname() {
    local out
    out=$(E run --rm "${RUN_OPTS[@]}" --hostname box-one "$IMAGE" hostname) || return 1
    expect_eq "box-one" "$out"
}

sc_cap_drop_all() {
    local out
    out=$(E run --rm "${RUN_OPTS[@]}" --cap-drop all "$IMAGE" \
        sh -c 'grep -E "^Cap(Eff|Prm|Bnd):" /proc/self/status') || return 1
    expect_eq "CapPrm:	0000000000000000
CapEff:	0000000000000000
CapBnd:	0000000000000000" "$out"
}

sc_seccomp() {
    local out
    out=$(E run --rm "${RUN_OPTS[@]}" "$IMAGE" grep Seccomp: /proc/self/status) || return 1
    expect_eq "Seccomp:	2" "$out"
}

sc_logs() {
    local id out ok=0
    id=$(E run -d "${RUN_OPTS[@]}" "$IMAGE" sh -c 'echo to stdout; echo to stderr >&2') || return 1
    E wait "$id"
    out=$(E logs "$id" 2>&1)
    echo "$out"
    expect_contains "$out" "to stdout" || ok=1
    expect_contains "$out" "to stderr" || ok=1
    E rm "$id" || ok=1
    return $ok
}

# Checks the freezer state of the init's cgroup from the host, on a v1
# freezer hierarchy or in the v2 cgroup.freeze file.
freezer_state() {
    local pid=$1 path
    path=$(awk -F: '$2 == "freezer" { print $3 }' "/proc/$pid/cgroup")
    if [ -n "$path" ]; then
        cat "/sys/fs/cgroup/freezer$path/freezer.state"
    else
        path=$(awk -F: '$1 == "0" { print $3 }' "/proc/$pid/cgroup")
        case "$(cat "/sys/fs/cgroup$path/cgroup.freeze" 2>/dev/null)" in
            1) echo FROZEN ;;
            *) echo THAWED ;;
        esac
    fi
}

sc_pause() {
    local id pid ok=0
    id=$(E run -d "${RUN_OPTS[@]}" "$IMAGE" sleep 300) || return 1
    pid=$(E inspect -f '{{.State.Pid}}' "$id")
    echo "container $id, host pid $pid"
    E pause "$id" || ok=1
    expect_eq paused "$(E inspect -f '{{.State.Status}}' "$id")" "status after pause" || ok=1
    expect_eq FROZEN "$(freezer_state "$pid")" "freezer after pause" || ok=1
    E unpause "$id" || ok=1
    expect_eq running "$(E inspect -f '{{.State.Status}}' "$id")" "status after unpause" || ok=1
    expect_eq THAWED "$(freezer_state "$pid")" "freezer after unpause" || ok=1
    expect_eq alive "$(E exec "$id" echo alive)" "exec after unpause" || ok=1
    E "${RM_FORCE[@]}" "$id" >/dev/null || ok=1
    return $ok
}

sc_stats() {
    local id out ok=0
    id=$(E run -d "${RUN_OPTS[@]}" -m 64m "$IMAGE" sleep 300) || return 1
    out=$(E stats --no-stream --format '{{.MemUsage}} pids={{.PIDs}}' "$id")
    echo "$out"
    # podman prints the limit as 67.11MB, docker as 64MiB.
    expect_match "$out" '^[0-9.]+[kKMG]i?B / (64MiB|67\.11MB) pids=1$' "memory usage and limit, pids" || ok=1
    E "${RM_FORCE[@]}" "$id" >/dev/null || ok=1
    return $ok
}

# `update` makes podman call `update --resources=FILE`, and docker's shim
# `update --resources -` with the new limits as JSON on standard input.
sc_update() {
    local id ok=0
    id=$(E run -d "${RUN_OPTS[@]}" -m 64m --memory-swap 128m "$IMAGE" sleep 300) || return 1
    if [ "$UPDATE_PIDS_LIMIT" = 1 ]; then
        E update --memory 96m --memory-swap 192m --pids-limit 40 "$id" || ok=1
        expect_eq 40 "$(E exec "$id" sh -c 'cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max')" \
            "pids limit after update" || ok=1
    else
        E update --memory 96m --memory-swap 192m "$id" || ok=1
    fi
    expect_eq 100663296 "$(E exec "$id" sh -c 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max')" \
        "memory limit after update" || ok=1
    E "${RM_FORCE[@]}" "$id" >/dev/null || ok=1
    return $ok
}

# Starts and force-removes 20 detached containers, then looks for anything
# left behind by any of them: an engine record, runtime state, a mount or
# a cgroup whose path contains the container id.
sc_loop20() {
    local i id ids=() ok=0
    for i in $(seq 1 20); do
        id=$(E run -d "${RUN_OPTS[@]}" "$IMAGE" sleep 300) || { ok=1; continue; }
        ids+=("$id")
        E "${RM_FORCE[@]}" "$id" >/dev/null || ok=1
    done
    expect_eq 20 "${#ids[@]}" "containers started" || ok=1
    check_no_leftovers "${ids[@]}" || ok=1
    return $ok
}

# check_no_leftovers ID...: fails for an id that the engine still lists, or
# that names a mount, a cgroup directory or RUNTIME_STATE_DIR/ID.
check_no_leftovers() {
    local id ok=0 listed
    listed=$("${ENGINE}_list_ids")
    for id in "$@"; do
        if grep -q "$id" <<<"$listed"; then
            echo "FAIL: $id still listed by the engine"
            ok=1
        fi
        if grep -q "$id" /proc/self/mountinfo; then
            echo "FAIL: mounts left for $id:"
            grep "$id" /proc/self/mountinfo
            ok=1
        fi
        if find /sys/fs/cgroup -maxdepth 6 -type d -name "*$id*" 2>/dev/null | grep -q .; then
            echo "FAIL: cgroups left for $id:"
            find /sys/fs/cgroup -maxdepth 6 -type d -name "*$id*" 2>/dev/null
            ok=1
        fi
        if [ -e "$RUNTIME_STATE_DIR/$id" ]; then
            echo "FAIL: runtime state left at $RUNTIME_STATE_DIR/$id"
            ok=1
        fi
    done
    return $ok
}
