containerd_scenarios=()
containerd_setup() { echo "not written yet"; return 1; }
