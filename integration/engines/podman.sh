# podman, with its own store, run directory and events log under WORK, the
# cgroupfs cgroup manager (no systemd needed) and `--runtime PATH` naming a
# logging wrapper around runc or conman-runtime. Sourced by run.sh.

podman_scenarios=("${SCENARIOS_CLI[@]}" known_name)

podman_setup() {
    command -v podman >/dev/null && command -v conmon >/dev/null || {
        echo "podman or conmon is not installed (apt-get install podman conmon)"
        return 1
    }
    local dir=$WORK/podman
    mkdir -p "$dir"
    PODMAN_BASE=(podman --root "$dir/root" --runroot "$dir/runroot" --tmpdir "$dir/tmp"
        --storage-driver overlay --cgroup-manager cgroupfs --events-backend file)
    cleanups+=("podman_teardown")
    "${PODMAN_BASE[@]}" import --change 'CMD ["/bin/sh"]' "$WORK/busybox-rootfs.tar" "$IMAGE"
}

podman_teardown() {
    "${PODMAN_BASE[@]}" rm -af -t 0 >/dev/null 2>&1
    "${PODMAN_BASE[@]}" system reset -f >/dev/null 2>&1
    # Anything still mounted under the store (overlay layers, shm) goes too.
    unmount_under "$WORK/podman"
    remove_cgroup_parent conman-engines-podman
}

# podman 4.3 gives root containers RLIMIT_NOFILE and RLIMIT_NPROC of
# 1048576 or more. Raising a hard limit needs CAP_SYS_RESOURCE, which root
# lacks in some VMs, and there runc fails too. So every run requests 1024.
podman_use_runtime() {
    local rt=$1 real
    if [ "$rt" = runc ]; then
        real=$runc_bin
        RUNTIME_STATE_DIR=/run/runc
    else
        real=$conman_bin
        RUNTIME_STATE_DIR=/run/conman-runtime
    fi
    PODMAN_RUNTIME_REAL=$real
    ECMD=("${PODMAN_BASE[@]}" --runtime "$(make_wrapper "$rt" "$real" "$WORK/calls-podman-$rt.log")")
    RT=$rt
    RUN_OPTS=(--network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024
        --cgroup-parent /conman-engines-podman)
    # `rm -f` sends SIGTERM and waits 10 seconds by default. `sleep` as pid 1
    # ignores SIGTERM, so the scenarios kill at once.
    RM_FORCE=(rm -f -t 0)
    # podman 4.3's `update` has no --pids-limit.
    UPDATE_PIDS_LIMIT=0
    E() { "${ECMD[@]}" "$@"; }
}

podman_list_ids() {
    E ps -a -q --no-trunc
}

# The runtime behind a wrapper named `runc`, so that conmon passes
# --log-format=json --log FILE as it does to runc. podman then reads the
# runtime's error from that log; a missing executable must still give 127.
podman_sc_known_name() {
    local wrapper log=$WORK/calls-podman-$RT-as-runc.log out rc ok=0
    wrapper=$(make_wrapper runc "$PODMAN_RUNTIME_REAL" "$log" "$RT-as-runc")
    out=$("${PODMAN_BASE[@]}" --runtime "$wrapper" run --rm "${RUN_OPTS[@]}" "$IMAGE" echo hello) || ok=1
    expect_eq hello "$out" "echo output" || ok=1
    "${PODMAN_BASE[@]}" --runtime "$wrapper" run --rm "${RUN_OPTS[@]}" "$IMAGE" /no/such/program
    rc=$?
    expect_eq 127 "$rc" "missing executable" || ok=1
    expect_contains "$(cat "$log")" "--log-format=json --log " "conmon passed the log flags" || ok=1
    return $ok
}
