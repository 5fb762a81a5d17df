# dockerd, as a private daemon: its own data root, exec root, pid file,
# socket and daemon.json under WORK, no bridge and no iptables rules, the
# cgroupfs cgroup driver, and the containerd it starts itself. Both
# runtimes are registered with --add-runtime through logging wrappers: the
# name "runc" is reserved for docker's built-in entry, so the reference is
# registered as "runc-logged". Uses the docker.io package's client,
# /usr/bin/docker. Sourced by run.sh.

docker_scenarios=("${SCENARIOS_CLI[@]}")

docker_setup() {
    command -v dockerd >/dev/null && [ -x /usr/bin/docker ] || {
        echo "dockerd or /usr/bin/docker is missing (apt-get install docker.io)"
        return 1
    }
    local dir=$WORK/docker
    mkdir -p "$dir"
    echo '{}' > "$dir/daemon.json"
    DOCKER_RUNC_WRAPPER=$(make_wrapper runc "$runc_bin" "$WORK/calls-docker-runc.log")
    DOCKER_CONMAN_WRAPPER=$(make_wrapper conman-runtime "$conman_bin" "$WORK/calls-docker-conman-runtime.log")
    dockerd --config-file "$dir/daemon.json" --data-root "$dir/data" --exec-root "$dir/exec" \
        --pidfile "$dir/dockerd.pid" -H "unix://$dir/docker.sock" \
        --bridge=none --iptables=false --ip-masq=false --exec-opt native.cgroupdriver=cgroupfs \
        --cgroup-parent /conman-engines-docker \
        --add-runtime "runc-logged=$DOCKER_RUNC_WRAPPER" --add-runtime "conman=$DOCKER_CONMAN_WRAPPER" \
        > "$dir/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    cleanups+=("docker_teardown")
    DOCKER_BASE=(/usr/bin/docker -H "unix://$dir/docker.sock")
    local i
    for i in $(seq 1 100); do
        "${DOCKER_BASE[@]}" version >/dev/null 2>&1 && break
        sleep 0.2
    done
    "${DOCKER_BASE[@]}" info --format '{{json .Runtimes}}' || return 1
    "${DOCKER_BASE[@]}" import --change 'CMD ["/bin/sh"]' "$WORK/busybox-rootfs.tar" "$IMAGE"
}

docker_teardown() {
    local ids
    ids=$("${DOCKER_BASE[@]}" ps -aq 2>/dev/null)
    if [ -n "$ids" ]; then
        # shellcheck disable=SC2086
        "${DOCKER_BASE[@]}" rm -f $ids >/dev/null 2>&1
    fi
    stop_daemon "${DOCKERD_PID:-}"
    unmount_under "$WORK/docker"
    remove_cgroup_parent conman-engines-docker
}

docker_use_runtime() {
    local rt=$1 name
    if [ "$rt" = runc ]; then
        name=runc-logged
    else
        name=conman
    fi
    RT=$rt
    # dockerd 20.10 gives every runtime the state root of its runc entry.
    RUNTIME_STATE_DIR=$WORK/docker/exec/runtime-runc/moby
    ECMD=("${DOCKER_BASE[@]}")
    RUN_OPTS=(--runtime "$name" --network none)
    RM_FORCE=(rm -f)
    UPDATE_PIDS_LIMIT=1
    E() { "${ECMD[@]}" "$@"; }
}

docker_list_ids() {
    E ps -a -q --no-trunc
}
