#!/usr/bin/env bash
# Run a real multi-node Slurm cluster on this one machine, for tests and CI: slurmctld (and its
# own munged) on the host, and per node a network namespace with its own address, hostname and
# /tmp, holding one slurmd and one sshd.
#
#   scripts/slurm-nodes.sh start     DIR [N]   # N nodes (default 2), named n1..nN
#   scripts/slurm-nodes.sh stop      DIR       # cancel jobs, stop every process, remove every
#                                              # namespace, link and mount made (idempotent)
#   scripts/slurm-nodes.sh status    DIR       # sinfo, or "down" (exit 1)
#   scripts/slurm-nodes.sh kill-node DIR NAME  # a node failure: SIGKILL everything on NAME
#   scripts/slurm-nodes.sh revive-node DIR NAME  # boot NAME again (empty /tmp), wait for idle
#
# Settings (environment): SLURM_NODES_SUBNET (first three octets of a private /24 that only
# this cluster uses; default 10.231.77: the host bridge is .1, node i is .(10+i)),
# SLURM_NODES_PORT (slurmctld's port, default 6827: not the single-node cluster's 6817, so
# both can run at once), SLURM_NODES_TAG (prefix of namespace and link names, default jsdn),
# SLURM_NODES_SHARED (colon-separated host paths under /tmp that every node must see, e.g. a
# test's working folder; DIR itself always is).
#
# Node i sees: its own /tmp (DIR/nodes/nI/tmp on the host), with DIR and the SLURM_NODES_SHARED
# paths bound back in at their own paths; everything outside /tmp is the host's. It answers
# ssh as root on ADDR:22 with DIR/ssh/id_ed25519 (DIR/ssh/known_hosts lists every node).
# After `start`, `. DIR/env` sets SLURM_CONF. DIR/run/made lists every namespace and link
# this script created, written before each is made, so that `stop` removes exactly those,
# also after a failed start. Needs root. See shared/reference/slurm-ssh-facts.md.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

PROG=${0##*/}
SUBNET=${SLURM_NODES_SUBNET:-10.231.77}
CTLD_PORT=${SLURM_NODES_PORT:-6827}
TAG=${SLURM_NODES_TAG:-jsdn}
START_TIMEOUT=${SLURM_NODES_START_TIMEOUT:-60}
STOP_TIMEOUT=${SLURM_NODES_STOP_TIMEOUT:-60}
CLIENT_TIMEOUT=20
SSHD=/usr/sbin/sshd

usage() {
    echo "usage: $PROG start DIR [N] | stop DIR | status DIR | kill-node|revive-node DIR NAME" >&2
    exit 2
}
info() { echo "$PROG: $*"; }
warn() { echo "$PROG: warning: $*" >&2; }

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

read_pid() { if [[ -s $1 ]]; then head -n1 "$1"; fi; }
pid_is() {
    pid_alive "$1" && [[ $(ps -o comm= -p "$1" 2>/dev/null) == "$2" ]]
}

ctld_up() { timeout "$CLIENT_TIMEOUT" scontrol ping 2>/dev/null | grep -q 'is UP'; }
munge_ok() { munge -S "$DIR/munge/socket" -n 2>/dev/null | unmunge -S "$DIR/munge/socket" >/dev/null 2>&1; }
all_idle() {
    local states
    states=$(timeout "$CLIENT_TIMEOUT" sinfo -h -N -o %T 2>/dev/null) || return 1
    [[ $(grep -c '^idle$' <<<"$states") == "$NODES" ]]
}
queue_empty() {
    local out
    out=$(timeout "$CLIENT_TIMEOUT" squeue -h -o %A 2>/dev/null) || return 1
    [[ -z $out ]]
}
accepts() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

ensure_packages() {
    local missing=() cmd
    for cmd in slurmctld slurmd munged mungekey munge ip nsenter unshare ssh-keygen; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    [[ -x $SSHD ]] || missing+=(sshd)
    ((${#missing[@]} == 0)) && return 0
    info "missing ${missing[*]}: installing them (apt-get)"
    apt-get -o DPkg::Lock::Timeout=300 update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        -o DPkg::Lock::Timeout=300 slurm-wlm munge openssh-server openssh-client iproute2 \
        util-linux >/dev/null
}

# made KIND NAME: record something about to be created, so that stop removes it.
made() { echo "$1 $2" >>"$DIR/run/made"; }

addr_of() { echo "$SUBNET.$((10 + $1))"; }
ns_of() { echo "$TAG-n$1"; }

# --- start ---------------------------------------------------------------------------------

fail_start() {
    echo "$PROG: error: $*" >&2
    local f
    for f in "$DIR"/log/slurmctld.log "$DIR"/log/slurmd.*.log "$DIR"/log/sshd.*.log \
        "$DIR"/log/holder.*.log; do
        if [[ -s $f ]]; then
            echo "----- tail of $f -----" >&2
            tail -n 8 "$f" >&2
        fi
    done
    echo "$PROG: stopping what was started" >&2
    do_stop >&2 || true
    exit 1
}

check_free() {
    local ns
    [[ $SUBNET =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "$PROG: error: bad SLURM_NODES_SUBNET" \
        "'$SUBNET' (want three octets, e.g. 10.231.77)" >&2; exit 1; }
    if ip -4 -o addr show | grep -q " $SUBNET\."; then
        echo "$PROG: error: $SUBNET.0/24 is already in use here ($(ip -4 -o addr show |
            grep " $SUBNET\." | awk '{print $2}' | tr '\n' ' ')); stop that cluster or set" \
            "SLURM_NODES_SUBNET to another private /24" >&2
        exit 1
    fi
    for ((i = 1; i <= NODES; i++)); do
        ns=$(ns_of "$i")
        if [[ -e /run/netns/$ns ]]; then
            echo "$PROG: error: network namespace $ns already exists; stop its cluster or" \
                "set SLURM_NODES_TAG" >&2
            exit 1
        fi
    done
    if command -v ss >/dev/null 2>&1 && [[ -n $(ss -Hltn "sport = :$CTLD_PORT") ]]; then
        echo "$PROG: error: TCP port $CTLD_PORT is in use; set SLURM_NODES_PORT" >&2
        exit 1
    fi
}

write_conf() {
    local mem i host
    host=$(hostname -s)
    mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]\+\).*/\1/p' | head -n1 || true)
    [[ $mem =~ ^[0-9]+$ ]] && ((mem > 0)) || mem=1024
    cat >"$CONF" <<EOF
# Written by scripts/slurm-nodes.sh: $NODES-node test cluster, everything under $DIR.
ClusterName=nodes
SlurmctldHost=$host($SUBNET.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/socket
SlurmctldPort=$CTLD_PORT
SlurmdPort=6818
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pidfile
SlurmdPidFile=$DIR/run/slurmd.%n.pidfile
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SlurmdParameters=config_overrides
MpiDefault=none
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
MinJobAge=3600
ReturnToService=2
InactiveLimit=0
KillWait=5
Waittime=0
# A killed node is declared DOWN (and its jobs NODE_FAIL) within ~3 pings of this.
SlurmdTimeout=6
EOF
    for ((i = 1; i <= NODES; i++)); do
        echo "NodeName=n$i NodeAddr=$(addr_of "$i") CPUs=4 RealMemory=$mem State=UNKNOWN" >>"$CONF"
    done
    echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP" >>"$CONF"
    printf 'export SLURM_CONF=%q\n' "$CONF" >"$DIR/env"
}

# A munged of our own, on its own socket and key (AuthInfo in slurm.conf points every daemon
# and client at it): the machine's shared munged may be stopped by whoever started it, in the
# middle of our session.
start_munge() {
    mkdir -p "$DIR/munge"
    chmod 0755 "$DIR" "$DIR/munge"   # munged wants every folder up to its socket searchable
    mungekey --create --keyfile="$DIR/munge/munge.key"
    /usr/sbin/munged --foreground --key-file="$DIR/munge/munge.key" \
        --socket="$DIR/munge/socket" --pid-file="$DIR/munge/munged.pidfile" \
        --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/seed" \
        </dev/null >>"$DIR/log/munged.out" 2>&1 &
    echo $! >"$DIR/run/munged.pid"
    wait_until 10 munge_ok || fail_start "munged did not answer within 10s"
}

make_keys() {
    local key i
    mkdir -p "$DIR/ssh" /run/sshd
    ssh-keygen -q -t ed25519 -N '' -C jsd-nodes-host -f "$DIR/ssh/ssh_host_ed25519_key"
    ssh-keygen -q -t ed25519 -N '' -C jsd-nodes-client -f "$DIR/ssh/id_ed25519"
    cp -f "$DIR/ssh/id_ed25519.pub" "$DIR/ssh/authorized_keys"
    key=$(cut -d' ' -f1,2 "$DIR/ssh/ssh_host_ed25519_key.pub")
    : >"$DIR/ssh/known_hosts"
    for ((i = 1; i <= NODES; i++)); do
        echo "$(addr_of "$i") $key" >>"$DIR/ssh/known_hosts"
        cat >"$DIR/ssh/sshd_config.n$i" <<EOF
# Written by scripts/slurm-nodes.sh: node n$i
Port 22
ListenAddress $(addr_of "$i")
HostKey $DIR/ssh/ssh_host_ed25519_key
PidFile $DIR/run/sshd.n$i.pidfile
AuthorizedKeysFile $DIR/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
MaxStartups 100:30:200
MaxSessions 100
EOF
    done
}

# The node's namespaces are held by a `sleep infinity` so that slurmd and sshd can be
# (re)started inside them with nsenter. `ip netns exec` is not used for slurmd: it mounts a
# fresh /sys without /sys/fs/cgroup, and slurmd 22.05 then refuses to start.
start_node() {
    local i=$1 ns addr hv nv
    ns=$(ns_of "$i")
    addr=$(addr_of "$i")
    hv="$TAG-h$i"
    nv="$TAG-v$i"
    made netns "$ns"
    ip netns add "$ns"
    made link "$hv"
    ip link add "$hv" type veth peer name "$nv" netns "$ns"
    ip link set "$hv" master "$BRIDGE" up
    ip -n "$ns" addr add "$addr/24" dev "$nv"
    ip -n "$ns" link set "$nv" up
    ip -n "$ns" link set lo up
    ip -n "$ns" route add default via "$SUBNET.1" 2>/dev/null || true
    boot_node "$i"
}

# boot_node I: the holder of node I's mount and UTS namespaces, then its sshd and slurmd.
boot_node() {
    local i=$1 ns tmp p rel binds=() holder
    ns=$(ns_of "$i")
    tmp=$DIR/nodes/n$i/tmp
    mkdir -p "$tmp" "$DIR/spool/n$i"
    chmod 1777 "$tmp"
    # Paths under /tmp that every node shares are bound into the node's /tmp before it
    # covers the host's (a recursive bind carries them along).
    for p in "$DIR" "${SHARED[@]}"; do
        [[ $p == /tmp/* ]] || continue
        rel=${p#/tmp/}
        mkdir -p "$tmp/$rel"
        binds+=("mount --bind $(printf %q "$p") $(printf %q "$tmp/$rel") &&")
    done
    rm -f "$DIR/run/ready.n$i"
    nsenter --net="/run/netns/$ns" unshare --mount --uts --propagation private \
        /bin/sh -c "hostname n$i && ${binds[*]} mount --rbind $(printf %q "$tmp") /tmp &&
            : >$(printf %q "$DIR/run/ready.n$i") && exec sleep infinity" \
        </dev/null >>"$DIR/log/holder.n$i.log" 2>&1 &
    holder=$!
    echo "$holder" >"$DIR/run/holder.n$i.pid"
    wait_until 10 test -e "$DIR/run/ready.n$i" || fail_start "node n$i's namespaces were not set up"

    in_node "$i" "$SSHD" -D -e -f "$DIR/ssh/sshd_config.n$i" </dev/null \
        >>"$DIR/log/sshd.n$i.log" 2>&1 &
    echo $! >"$DIR/run/sshd.n$i.pid"
    in_node "$i" /usr/sbin/slurmd -D -N "n$i" </dev/null >>"$DIR/log/slurmd.n$i.out" 2>&1 &
    echo $! >"$DIR/run/slurmd.n$i.pid"
}

# in_node I CMD...: run CMD inside node I's namespaces (exec: $! is CMD's own PID).
in_node() {
    local i=$1
    shift
    nsenter -t "$(read_pid "$DIR/run/holder.n$i.pid")" --net --uts --mount --wd=/ "$@"
}

do_start() {
    local t0 i
    t0=$(now_ns)
    [[ $(id -u) == 0 ]] || { echo "$PROG: error: must run as root" >&2; exit 1; }
    if ! [[ $NODES =~ ^[0-9]+$ ]] || ((NODES < 1 || NODES > 200)); then usage; fi
    ensure_packages
    if [[ -s $DIR/run/made ]]; then
        echo "$PROG: error: $DIR holds a cluster (run/made is not empty); stop it first" >&2
        exit 1
    fi
    check_free
    mkdir -p "$DIR"/{state,spool,run,log,nodes}
    : >"$DIR/run/made"
    echo "$NODES" >"$DIR/run/nodes"
    export SLURM_CONF=$CONF
    write_conf
    make_keys
    start_munge

    made link "$BRIDGE"
    ip link add "$BRIDGE" type bridge
    ip addr add "$SUBNET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up

    /usr/sbin/slurmctld -D </dev/null >"$DIR/log/slurmctld.out" 2>&1 &
    echo $! >"$DIR/run/slurmctld.pid"
    wait_until "$START_TIMEOUT" ctld_up || fail_start "slurmctld did not answer within ${START_TIMEOUT}s"

    for ((i = 1; i <= NODES; i++)); do start_node "$i"; done
    for ((i = 1; i <= NODES; i++)); do
        wait_until "$START_TIMEOUT" accepts "$(addr_of "$i")" 22 ||
            fail_start "sshd of node n$i does not accept connections on $(addr_of "$i"):22"
    done
    wait_until "$START_TIMEOUT" all_idle || fail_start "not every node became idle:" \
        "$(sinfo -h -N -o '%N %T %E' 2>&1 || true)"
    wait_until 20 grep -q '^\[[^]]*\] SchedulerParameters=' "$DIR/log/slurmctld.log" ||
        warn "no first scheduling pass in slurmctld.log after 20s; going on"
    info "$NODES nodes up in $(awk -v a="$t0" -v b="$(now_ns)" \
        'BEGIN { printf "%.2f", (b - a) / 1e9 }')s ($SUBNET.11-$((10 + NODES)));" \
        "export SLURM_CONF=$CONF (or: . $DIR/env)"
}

# --- stop ----------------------------------------------------------------------------------

# kill_netns NS: SIGKILL every process inside network namespace NS, and wait for them.
kill_netns() {
    local ns=$1 pids p
    [[ -e /run/netns/$ns ]] || return 0
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -n $pids ]] || return 0
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
    for p in $pids; do wait_until 10 pid_gone "$p" || warn "pid $p in $ns survived SIGKILL"; done
}

do_stop() {
    local t0 pid name kind i ids
    t0=$(now_ns)
    export SLURM_CONF=$CONF
    pid=$(read_pid "$DIR/run/slurmctld.pid")
    if pid_is "$pid" slurmctld; then
        ids=$(timeout "$CLIENT_TIMEOUT" squeue -h -o %A 2>/dev/null || true)
        if [[ -n $ids ]]; then
            # shellcheck disable=SC2086 # one argument per id
            timeout "$CLIENT_TIMEOUT" scancel $ids 2>/dev/null || true
            wait_until 20 queue_empty || warn "jobs left in the queue: $(echo "$ids" | tr '\n' ' ')"
        fi
    fi
    # Every process of a node lives in its network namespace: slurmd, slurmstepd, the jobs,
    # sshd and its sessions, the holder. Killing them all ends the node's mount namespace too.
    if [[ -s $DIR/run/made ]]; then
        while read -r kind name; do
            [[ $kind == netns ]] && kill_netns "$name"
        done <"$DIR/run/made"
    fi
    for i in "$DIR"/run/holder.*.pid; do
        [[ -e $i ]] || continue
        pid=$(read_pid "$i")
        if pid_is "$pid" sleep; then kill -KILL "$pid"; fi
    done
    pid=$(read_pid "$DIR/run/slurmctld.pid")
    if pid_is "$pid" slurmctld; then
        kill -TERM "$pid"
        wait_until "$STOP_TIMEOUT" pid_gone "$pid" || { kill -KILL "$pid" 2>/dev/null || true; }
    fi
    pid=$(read_pid "$DIR/run/munged.pid")
    if pid_is "$pid" munged; then
        kill -TERM "$pid"
        wait_until 10 pid_gone "$pid" || warn "munged (pid $pid) did not stop"
    fi
    if [[ -s $DIR/run/made ]]; then
        # Last made, first removed; deleting a namespace also deletes its veth pair.
        tac "$DIR/run/made" | while read -r kind name; do
            case $kind in
            netns) [[ ! -e /run/netns/$name ]] || ip netns del "$name" || warn "ip netns del $name failed" ;;
            link) if ip link show "$name" >/dev/null 2>&1; then ip link del "$name" ||
                warn "ip link del $name failed"; fi ;;
            esac
        done
        : >"$DIR/run/made"
    fi
    rm -f "$DIR"/run/*.pid "$DIR"/run/ready.*
    info "stopped in $(awk -v a="$t0" -v b="$(now_ns)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')s"
}

do_kill_node() {
    local name=$1 i
    [[ $name =~ ^n([0-9]+)$ ]] || { echo "$PROG: error: no node '$name' (n1, n2, ...)" >&2; exit 1; }
    i=${BASH_REMATCH[1]}
    kill_netns "$(ns_of "$i")"
    info "node $name killed: every process in $(ns_of "$i") got SIGKILL"
}

# A killed node comes back as after a reboot: same address, an empty /tmp, fresh daemons.
do_revive_node() {
    local name=$1 i state
    [[ $name =~ ^n([0-9]+)$ && -e /run/netns/$(ns_of "${BASH_REMATCH[1]}") ]] ||
        { echo "$PROG: error: no node '$name' in $DIR" >&2; exit 1; }
    i=${BASH_REMATCH[1]}
    export SLURM_CONF=$CONF
    kill_netns "$(ns_of "$i")"
    find "$DIR/nodes/n$i/tmp" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    boot_node "$i"
    node_back() {
        state=$(timeout "$CLIENT_TIMEOUT" sinfo -h -n "$name" -N -o %T 2>/dev/null) &&
            [[ $state == idle ]]
    }
    wait_until "$START_TIMEOUT" node_back || { echo "$PROG: error: node $name is not idle" \
        "after ${START_TIMEOUT}s: $(sinfo -h -n "$name" -N -o '%T %E' 2>&1)" >&2; exit 1; }
    info "node $name is back"
}

do_status() {
    export SLURM_CONF=$CONF
    if pid_is "$(read_pid "$DIR/run/slurmctld.pid")" slurmctld && ctld_up; then
        timeout "$CLIENT_TIMEOUT" sinfo -N
        return 0
    fi
    echo "multi-node slurm cluster in $DIR is down"
    return 1
}

(($# >= 2)) || usage
ACTION=$1
DIR=$(realpath -m -- "$2")
CONF=$DIR/slurm.conf
BRIDGE="$TAG-br"
IFS=: read -r -a SHARED <<<"${SLURM_NODES_SHARED:-}"
case $ACTION in
start)
    (($# <= 3)) || usage
    NODES=${3:-2}
    do_start
    ;;
stop)
    if [[ ! -d $DIR ]]; then
        info "nothing to stop in $DIR"
        exit 0
    fi
    do_stop
    ;;
status) do_status || exit 1 ;;
kill-node)
    (($# == 3)) || usage
    do_kill_node "$3"
    ;;
revive-node)
    (($# == 3)) || usage
    do_revive_node "$3"
    ;;
*) usage ;;
esac
