# shellcheck shell=bash
# Shell helpers shared by scripts/slurm-cluster.sh and scripts/ssh-nodes.sh (sourced).

now_ns() { date +%s%N; }

# wait_until SECONDS COMMAND...: poll COMMAND every 0.05 s; return 1 on timeout.
wait_until() {
    local timeout=$1
    shift
    local deadline=$(($(now_ns) + timeout * 1000000000))
    until "$@"; do
        (($(now_ns) < deadline)) || return 1
        sleep 0.05
    done
}

# pid_alive PID: the process exists and is not a zombie (kill -0 succeeds on zombies).
pid_alive() {
    local stat
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n $stat && $stat != Z* ]]
}
pid_gone() { ! pid_alive "$1"; }
