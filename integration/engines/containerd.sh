# containerd as a private daemon, with its own config, root, state and gRPC
# socket under WORK. Its CRI plugin is disabled, so no CNI is involved.
# `ctr` drives it with the runc v2 shim and `--runc-binary` naming a logging
# wrapper around runc or conman-runtime. Sourced by run.sh.
#
# ctr 1.6 has no flags for the user, the hostname or a pids limit. So
# env_workdir checks only the environment and the working directory,
# limits checks only the memory limit, and there is no hostname scenario.

containerd_scenarios=(echo exit_codes env_workdir read_only mounts limits
    detach_exec_stop tty exec_tty cap_drop_all seccomp logs pause stats ps
    loop20)

containerd_setup() {
    command -v containerd >/dev/null && command -v ctr >/dev/null || {
        echo "containerd is not installed (apt-get install containerd)"
        return 1
    }
    local dir=$WORK/containerd
    mkdir -p "$dir"
    cat > "$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dir/containerd.sock"
[debug]
  level = "info"
EOF
    containerd --config "$dir/config.toml" > "$dir/containerd.log" 2>&1 &
    CONTAINERD_PID=$!
    cleanups+=("containerd_teardown")
    local i
    for i in $(seq 1 50); do
        [ -S "$dir/containerd.sock" ] && break
        sleep 0.2
    done
    CTR_BASE=(ctr --address "$dir/containerd.sock" --namespace conman-engines)
    "${CTR_BASE[@]}" version || return 1
    build_oci_archive "$WORK/busybox-rootfs.tar" "$IMAGE" "$WORK/busybox-oci.tar"
    "${CTR_BASE[@]}" images import "$WORK/busybox-oci.tar"
    "${CTR_BASE[@]}" images ls -q | grep -qx "$IMAGE"
}

containerd_teardown() {
    local id
    for id in $("${CTR_BASE[@]}" tasks ls -q 2>/dev/null); do
        "${CTR_BASE[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1
        "${CTR_BASE[@]}" tasks rm -f "$id" >/dev/null 2>&1
    done
    for id in $("${CTR_BASE[@]}" containers ls -q 2>/dev/null); do
        "${CTR_BASE[@]}" containers rm "$id" >/dev/null 2>&1
    done
    "${CTR_BASE[@]}" images rm "$IMAGE" >/dev/null 2>&1
    stop_daemon "${CONTAINERD_PID:-}"
    unmount_under "$WORK/containerd"
    # ctr puts each container in the cgroup /NAMESPACE/ID.
    remove_cgroup_parent conman-engines
}

containerd_use_runtime() {
    local rt=$1 real
    if [ "$rt" = runc ]; then
        real=$runc_bin
    else
        real=$conman_bin
    fi
    RT=$rt
    RUNTIME_STATE_DIR=$WORK/containerd/runtime-root-$rt/conman-engines
    ECMD=("${CTR_BASE[@]}")
    RUN_OPTS=(--runc-binary "$(make_wrapper "$rt" "$real" "$WORK/calls-containerd-$rt.log")"
        --runc-root "$WORK/containerd/runtime-root-$rt")
    E() { "${ECMD[@]}" "$@"; }
}

new_id() {
    echo "engines-$RT-$RANDOM$RANDOM"
}

# task_status ID: RUNNING, PAUSED, STOPPED..., or nothing without a task.
task_status() {
    E tasks ls | awk -v id="$1" '$1 == id { print $3 }'
}

task_pid() {
    E tasks ls | awk -v id="$1" '$1 == id { print $2 }'
}

# wait_stopped ID SECONDS: waits until the task has stopped.
wait_stopped() {
    local i
    for i in $(seq 1 $(($2 * 5))); do
        [ "$(task_status "$1")" = STOPPED ] && return 0
        sleep 0.2
    done
    echo "FAIL: task $1 has not stopped after $2s (status $(task_status "$1"))"
    return 1
}

remove_container() {
    E tasks rm -f "$1" >/dev/null 2>&1
    E containers rm "$1"
}

containerd_sc_echo() {
    local out
    out=$(E run --rm "${RUN_OPTS[@]}" "$IMAGE" "$(new_id)" echo hello from busybox) || return 1
    expect_eq "hello from busybox" "$out"
}

# ctr passes the runtime's error on and exits 1. Unlike podman and docker,
# it does not map a missing executable to 127.
containerd_sc_exit_codes() {
    local rc out ok=0 id
    E run --rm "${RUN_OPTS[@]}" "$IMAGE" "$(new_id)" sh -c 'exit 42'
    rc=$?
    expect_eq 42 "$rc" "exit 42" || ok=1
    id=$(new_id)
    out=$(E run --rm "${RUN_OPTS[@]}" "$IMAGE" "$id" /no/such/program 2>&1)
    rc=$?
    echo "$out"
    [ "$rc" -ne 0 ] || { echo "FAIL: a missing executable exits 0"; ok=1; }
    expect_contains "$out" "/no/such/program" "error names the program" || ok=1
    remove_container "$id" 2>/dev/null
    return $ok
}

containerd_sc_env_workdir() {
    local out
    out=$(E run --rm "${RUN_OPTS[@]}" --env GREETING=hi --cwd /tmp "$IMAGE" "$(new_id)" \
        sh -c 'echo "$GREETING $(pwd)"') || return 1
    expect_eq "hi /tmp" "$out"
}

containerd_sc_read_only() {
    local out
    out=$(E run --rm "${RUN_OPTS[@]}" --read-only "$IMAGE" "$(new_id)" \
        sh -c 'touch /probe 2>&1; echo "touch exit $?"')
    echo "$out"
    expect_contains "$out" "Read-only file system" && expect_contains "$out" "touch exit 1"
}

containerd_sc_mounts() {
    local share=$WORK/share-containerd-$RT out
    make_mount_share "$share"
    out=$(E run --rm "${RUN_OPTS[@]}" \
        --mount type=tmpfs,src=tmpfs,dst=/scratch,options=size=1m \
        --mount "type=bind,src=$share/ro,dst=/data,options=rbind:ro" \
        --mount "type=bind,src=$share/rw,dst=/out,options=rbind:rw" \
        "$IMAGE" "$(new_id)" sh -c "$MOUNTS_PROBE") || return 1
    expect_mounts "$out" "$share"
}

# ctr mounts no cgroup filesystem in the container, so the limit is read
# from the host, in the cgroup of the container's init.
containerd_sc_limits() {
    local id pid path ok=0
    id=$(new_id)
    E run -d "${RUN_OPTS[@]}" --memory-limit 67108864 "$IMAGE" "$id" sleep 300 || return 1
    pid=$(task_pid "$id")
    path=$(awk -F: '$2 == "memory" { print $3 }' "/proc/$pid/cgroup")
    echo "init $pid in memory cgroup $path"
    if [ -n "$path" ]; then
        expect_eq 67108864 "$(cat "/sys/fs/cgroup/memory$path/memory.limit_in_bytes")" "memory.limit_in_bytes" || ok=1
    else
        path=$(awk -F: '$1 == "0" { print $3 }' "/proc/$pid/cgroup")
        expect_eq 67108864 "$(cat "/sys/fs/cgroup$path/memory.max")" "memory.max" || ok=1
    fi
    E tasks kill -s SIGKILL "$id"
    wait_stopped "$id" 10 || ok=1
    remove_container "$id" || ok=1
    return $ok
}

containerd_sc_detach_exec_stop() {
    local id out rc ok=0 start elapsed
    id=$(new_id)
    E run -d "${RUN_OPTS[@]}" "$IMAGE" "$id" \
        sh -c 'trap "exit 3" TERM; while :; do sleep 1; done' || return 1
    out=$(E tasks exec --exec-id exec1 "$id" echo exec works)
    expect_eq "exec works" "$out" "exec output" || ok=1
    E tasks exec --exec-id exec2 "$id" sh -c 'exit 7'
    rc=$?
    expect_eq 7 "$rc" "exec exit code" || ok=1
    out=$(E tasks exec --exec-id exec3 "$id" cat /proc/1/cmdline | tr '\0' ' ')
    expect_contains "$out" "trap" "exec sees the init as pid 1" || ok=1
    start=$(date +%s)
    E tasks kill "$id" || ok=1
    wait_stopped "$id" 10 || ok=1
    elapsed=$(( $(date +%s) - start ))
    echo "stop took ${elapsed}s"
    [ "$elapsed" -lt 8 ] || { echo "FAIL: SIGTERM did not stop the init"; ok=1; }
    out=$(E tasks rm "$id")
    echo "$out"
    remove_container "$id" || ok=1
    if E containers ls -q | grep -qx "$id"; then
        echo "FAIL: container still listed after rm"
        ok=1
    fi
    return $ok
}

# ctr sets the console size only after the task has started, so the
# container waits a second before reading it, as in sc_tty.
containerd_sc_tty() {
    local cmd out
    cmd="stty rows 31 cols 97; $(printf '%q ' "${ECMD[@]}" run -t --rm "${RUN_OPTS[@]}" "$IMAGE" "$(new_id)" sh -c 'tty; sleep 1; stty size')"
    out=$(sleep 3 | timeout 60 script -qec "$cmd" /dev/null | tr -d '\r')
    echo "$out"
    expect_contains "$out" "/dev/pts/0" "tty inside" && expect_contains "$out" "31 97" "terminal size"
}

containerd_sc_exec_tty() {
    local id cmd out ok=0
    id=$(new_id)
    E run -d "${RUN_OPTS[@]}" "$IMAGE" "$id" sleep 300 || return 1
    cmd="stty rows 29 cols 83; $(printf '%q ' "${ECMD[@]}" tasks exec -t --exec-id tty1 "$id" sh -c 'tty; sleep 1; stty size')"
    out=$(sleep 3 | timeout 60 script -qec "$cmd" /dev/null | tr -d '\r')
    echo "$out"
    expect_match "$out" '^/dev/pts/[0-9]+$' "tty inside" || ok=1
    expect_contains "$out" "29 83" "terminal size" || ok=1
    E tasks kill -s SIGKILL "$id"
    wait_stopped "$id" 10 || ok=1
    remove_container "$id" || ok=1
    return $ok
}

# ctr has no "drop all": the container gets containerd's default set, and
# each of those is dropped by name.
containerd_sc_cap_drop_all() {
    local out drops=() cap
    for cap in CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP \
        SETPCAP NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE; do
        drops+=(--cap-drop "CAP_$cap")
    done
    out=$(E run --rm "${RUN_OPTS[@]}" "${drops[@]}" "$IMAGE" "$(new_id)" \
        sh -c 'grep -E "^Cap(Eff|Prm|Bnd):" /proc/self/status') || return 1
    expect_eq "CapPrm:	0000000000000000
CapEff:	0000000000000000
CapBnd:	0000000000000000" "$out"
}

containerd_sc_seccomp() {
    local out
    out=$(E run --rm "${RUN_OPTS[@]}" --seccomp "$IMAGE" "$(new_id)" grep Seccomp: /proc/self/status) || return 1
    expect_eq "Seccomp:	2" "$out"
}

containerd_sc_logs() {
    local id out ok=0 log=$WORK/containerd/log-$RT.txt
    id=$(new_id)
    E run -d "${RUN_OPTS[@]}" --log-uri "file://$log" "$IMAGE" "$id" \
        sh -c 'echo to stdout; echo to stderr >&2' || return 1
    wait_stopped "$id" 10 || ok=1
    out=$(cat "$log")
    echo "$out"
    expect_contains "$out" "to stdout" || ok=1
    expect_contains "$out" "to stderr" || ok=1
    remove_container "$id" || ok=1
    return $ok
}

containerd_sc_pause() {
    local id pid ok=0
    id=$(new_id)
    E run -d "${RUN_OPTS[@]}" "$IMAGE" "$id" sleep 300 || return 1
    pid=$(task_pid "$id")
    echo "container $id, host pid $pid"
    E tasks pause "$id" || ok=1
    expect_eq PAUSED "$(task_status "$id")" "status after pause" || ok=1
    expect_eq FROZEN "$(freezer_state "$pid")" "freezer after pause" || ok=1
    E tasks resume "$id" || ok=1
    expect_eq RUNNING "$(task_status "$id")" "status after resume" || ok=1
    expect_eq THAWED "$(freezer_state "$pid")" "freezer after resume" || ok=1
    expect_eq alive "$(E tasks exec --exec-id probe "$id" echo alive)" "exec after resume" || ok=1
    E tasks kill -s SIGKILL "$id"
    wait_stopped "$id" 10 || ok=1
    remove_container "$id" || ok=1
    return $ok
}

# The shim reads the statistics from the cgroup itself.
containerd_sc_stats() {
    local id out ok=0
    id=$(new_id)
    E run -d "${RUN_OPTS[@]}" --memory-limit 67108864 "$IMAGE" "$id" sleep 300 || return 1
    out=$(E tasks metrics "$id")
    echo "$out"
    expect_match "$out" '^memory\.(limit_in_bytes|max) +67108864 *$' "memory limit" || ok=1
    expect_match "$out" '^memory\.usage(_in_bytes)? +[1-9][0-9]* *$' "memory usage" || ok=1
    E tasks kill -s SIGKILL "$id"
    wait_stopped "$id" 10 || ok=1
    remove_container "$id" || ok=1
    return $ok
}

# `ctr tasks ps` makes the shim call the runtime's `ps --format json`.
containerd_sc_ps() {
    local id out pid ok=0
    id=$(new_id)
    E run -d "${RUN_OPTS[@]}" "$IMAGE" "$id" sleep 300 || return 1
    pid=$(task_pid "$id")
    out=$(E tasks ps "$id")
    echo "$out"
    expect_match "$out" "^$pid( |$)" "init pid $pid listed" || ok=1
    E tasks kill -s SIGKILL "$id"
    wait_stopped "$id" 10 || ok=1
    remove_container "$id" || ok=1
    return $ok
}

containerd_sc_loop20() {
    local i id ids=() ok=0
    for i in $(seq 1 20); do
        id=$(new_id)
        E run -d "${RUN_OPTS[@]}" "$IMAGE" "$id" sleep 300 || { ok=1; continue; }
        ids+=("$id")
        E tasks kill -s SIGKILL "$id" || ok=1
        wait_stopped "$id" 10 || ok=1
        remove_container "$id" || ok=1
    done
    expect_eq 20 "${#ids[@]}" "containers started" || ok=1
    check_no_leftovers "${ids[@]}" || ok=1
    return $ok
}

containerd_list_ids() {
    E containers ls -q
}
