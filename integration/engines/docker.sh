docker_scenarios=()
docker_setup() { echo "not written yet"; return 1; }
