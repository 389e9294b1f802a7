#!/usr/bin/env bash
# Run real OpenSSH servers on loopback addresses, one per "node", for tests and CI.
#
#   scripts/ssh-nodes.sh start DIR PORT HOST...   # e.g. start /tmp/x 2222 127.0.0.1 127.0.0.2
#   scripts/ssh-nodes.sh stop  DIR [HOST...]      # all hosts by default; idempotent
#
# In DIR: ssh_host_ed25519_key (one host key shared by all nodes), id_ed25519 (client
# key, authorized for root), authorized_keys, known_hosts (`[HOST]:PORT ssh-ed25519 ...`
# for every configured host), and per HOST: sshd_config.HOST, sshd.HOST.pid, sshd.HOST.log.
# `start` on an existing DIR reuses the keys, so a host can be stopped and started again
# (a "node down" test) and still match known_hosts. All nodes share one filesystem.
# Connect with:
#   ssh -p PORT -i DIR/id_ed25519 -o UserKnownHostsFile=DIR/known_hosts \
#       -o StrictHostKeyChecking=yes -o BatchMode=yes root@HOST
# Needs root (sshd, /run/sshd). See shared/reference/slurm-ssh-facts.md.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

PROG=${0##*/}
SSHD=/usr/sbin/sshd          # absolute path: sshd re-executes itself
START_TIMEOUT=${SSH_NODES_START_TIMEOUT:-15}
STOP_TIMEOUT=${SSH_NODES_STOP_TIMEOUT:-15}

usage() {
    echo "usage: $PROG start DIR PORT HOST... | stop DIR [HOST...]" >&2
    exit 2
}
info() { echo "$PROG: $*"; }
die() {
    echo "$PROG: error: $*" >&2
    exit 1
}
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
is_sshd() {
    pid_alive "$1" && [[ $(ps -o comm= -p "$1" 2>/dev/null) == sshd ]]
}

# accepts HOST PORT: something accepts TCP connections there.
accepts() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
# up_or_dead HOST PORT PID: listening, or the sshd died (stop waiting early).
up_or_dead() { accepts "$1" "$2" || ! pid_alive "$3"; }

valid_host() { [[ $1 =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ || $1 =~ ^[A-Za-z0-9.-]+$ ]]; }

ensure_packages() {
    if [[ -x $SSHD ]] && command -v ssh-keygen >/dev/null 2>&1; then
        return 0
    fi
    info "$SSHD or ssh-keygen missing: installing openssh-server, openssh-client (apt-get)"
    apt-get -o DPkg::Lock::Timeout=300 update || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 \
        openssh-server openssh-client || die "apt-get install openssh-server openssh-client failed"
}

write_known_hosts() {
    local key conf host port tmp
    key=$(cut -d' ' -f1,2 "$DIR/ssh_host_ed25519_key.pub")
    tmp=$DIR/known_hosts.tmp
    : >"$tmp"
    for conf in "$DIR"/sshd_config.*; do
        [[ -f $conf ]] || continue
        host=$(awk '$1 == "ListenAddress" { print $2; exit }' "$conf")
        port=$(awk '$1 == "Port" { print $2; exit }' "$conf")
        if [[ $port == 22 ]]; then
            echo "$host $key" >>"$tmp"
        else
            echo "[$host]:$port $key" >>"$tmp"
        fi
    done
    mv -f "$tmp" "$DIR/known_hosts"
}

# descendants PID: all descendant PIDs of PID (children first, then theirs).
descendants() {
    local child
    for child in $(pgrep -P "$1" || true); do
        echo "$child"
        descendants "$child"
    done
}

stop_host() {
    local host=$1 pidfile pid p
    pidfile=$DIR/sshd.$host.pid
    pid=$(head -n1 "$pidfile" 2>/dev/null || true)
    if is_sshd "$pid"; then
        # Sessions (per-connection sshds and the commands they run) would outlive the
        # listener: end them too, like a node that goes down.
        for p in $(descendants "$pid"); do
            kill -TERM "$p" 2>/dev/null || true
        done
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_until "$STOP_TIMEOUT" pid_gone "$pid"; then
            echo "$PROG: warning: sshd $host (pid $pid) ignored SIGTERM; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            wait_until 5 pid_gone "$pid" || echo "$PROG: warning: sshd pid $pid still there" >&2
        fi
        info "stopped sshd on $host (pid $pid)"
    fi
    rm -f "$pidfile"
}

fail_start() {
    local host=$1
    shift
    echo "$PROG: error: $*" >&2
    if [[ -s $DIR/sshd.$host.log ]]; then
        echo "----- tail of $DIR/sshd.$host.log -----" >&2
        tail -n 20 "$DIR/sshd.$host.log" >&2
    fi
    local h
    for h in "${STARTED_HOSTS[@]}"; do stop_host "$h" >&2; done
    exit 1
}

STARTED_HOSTS=()

do_start() {
    local port=$1
    shift
    local t0 host conf pid
    t0=$(now_ns)
    if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then die "bad port: $port"; fi
    for host in "$@"; do valid_host "$host" || die "bad host: $host"; done
    [[ $(id -u) == 0 ]] || die "must run as root"
    ensure_packages
    mkdir -p /run/sshd "$DIR"
    chmod 0755 /run/sshd
    # Keys: made once per DIR, reused on later starts so known_hosts stays valid.
    [[ -s $DIR/ssh_host_ed25519_key ]] ||
        ssh-keygen -q -t ed25519 -N '' -C "jobspec-test-host" -f "$DIR/ssh_host_ed25519_key"
    [[ -s $DIR/id_ed25519 ]] ||
        ssh-keygen -q -t ed25519 -N '' -C "jobspec-test-client" -f "$DIR/id_ed25519"
    cp -f "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
    chmod 0600 "$DIR/ssh_host_ed25519_key" "$DIR/id_ed25519"

    for host in "$@"; do
        pid=$(head -n1 "$DIR/sshd.$host.pid" 2>/dev/null || true)
        if is_sshd "$pid" && accepts "$host" "$port"; then
            info "sshd on $host:$port already running (pid $pid)"
            continue
        fi
        accepts "$host" "$port" && fail_start "$host" "$host:$port is already in use by another process"
        conf=$DIR/sshd_config.$host
        cat >"$conf" <<EOF
# Written by scripts/ssh-nodes.sh: test node $host
Port $port
ListenAddress $host
HostKey $DIR/ssh_host_ed25519_key
PidFile $DIR/sshd.$host.pid
AuthorizedKeysFile $DIR/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
MaxStartups 100:30:200
MaxSessions 100
LogLevel VERBOSE
EOF
        "$SSHD" -t -f "$conf" 2>"$DIR/sshd.$host.log" ||
            fail_start "$host" "sshd -t rejected $conf"
        "$SSHD" -D -e -f "$conf" </dev/null >>"$DIR/sshd.$host.log" 2>&1 &
        pid=$!
        echo "$pid" >"$DIR/sshd.$host.pid"
        STARTED_HOSTS+=("$host")
        wait_until "$START_TIMEOUT" up_or_dead "$host" "$port" "$pid" || true
        pid_alive "$pid" || fail_start "$host" "sshd for $host:$port (pid $pid) exited during start-up"
        accepts "$host" "$port" ||
            fail_start "$host" "sshd for $host:$port does not accept connections after ${START_TIMEOUT}s"
        info "sshd on $host:$port up (pid $pid)"
    done
    write_known_hosts
    info "started in $(awk -v a="$t0" -v b="$(now_ns)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')s;" \
        "key $DIR/id_ed25519, known_hosts $DIR/known_hosts"
}

do_stop() {
    local host pidfile
    if (($# == 0)); then
        for pidfile in "$DIR"/sshd.*.pid; do
            [[ -e $pidfile ]] || continue
            host=${pidfile##*/sshd.}
            stop_host "${host%.pid}"
        done
    else
        for host in "$@"; do stop_host "$host"; done
    fi
}

(($# >= 2)) || usage
ACTION=$1
DIR=$(realpath -m -- "$2")
shift 2
case $ACTION in
start)
    (($# >= 2)) || usage
    do_start "$@"
    ;;
stop)
    if [[ ! -d $DIR ]]; then
        info "nothing to stop in $DIR"
        exit 0
    fi
    do_stop "$@"
    ;;
*) usage ;;
esac
