#!/usr/bin/env bash
# Run a real, single-node Slurm cluster (munged + slurmctld + slurmd) out of a
# private directory, for tests and CI.
#
#   scripts/slurm-cluster.sh start  DIR   # install if needed, configure, start, wait for `idle`
#   scripts/slurm-cluster.sh stop   DIR   # cancel all jobs, stop the daemons (idempotent)
#   scripts/slurm-cluster.sh status DIR   # print sinfo (exit 0) or say it is down (exit 1)
#
# After `start`, clients need `SLURM_CONF=DIR/slurm.conf`: `. DIR/env` sets it.
# Layout: DIR/slurm.conf, DIR/env, DIR/{state,spool,run,log}; our PIDs in
# DIR/run/{munged,slurmctld,slurmd}.pid (the cluster's own munged, key and socket in
# DIR/munge); logs in DIR/log (slurmctld.log, slurmd.log, *.out, jobcomp.txt).
# Needs root. Ports 6817/6818 are fixed, so only one such cluster can run at a time.
# See shared/reference/slurm-ssh-facts.md for the measurements behind the choices.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

PROG=${0##*/}
START_TIMEOUT=${SLURM_CLUSTER_START_TIMEOUT:-60}   # seconds for the daemons to come up
STOP_TIMEOUT=${SLURM_CLUSTER_STOP_TIMEOUT:-60}     # seconds for jobs to drain / daemons to exit
CLIENT_TIMEOUT=20                                  # seconds for one client call (squeue, scancel, ...)

usage() {
    echo "usage: $PROG start|stop|status DIR" >&2
    exit 2
}

info() { echo "$PROG: $*"; }
warn() { echo "$PROG: warning: $*" >&2; }

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# pid_is PID COMM: alive and its command name is COMM (guards against PID reuse).
pid_is() {
    local comm
    pid_alive "$1" || return 1
    comm=$(ps -o comm= -p "$1" 2>/dev/null) || return 1
    [[ $comm == "$2" ]]
}

# descendants PID: every descendant of PID (children first, then theirs).
descendants() {
    local child
    for child in $(pgrep -P "$1" || true); do
        echo "$child"
        descendants "$child"
    done
}

read_pid() {
    if [[ -s $1 ]]; then head -n1 "$1"; fi
}

# conf_of PID: the SLURM_CONF a process was started with (empty if none / unreadable).
conf_of() {
    pid_alive "$1" || return 0
    tr '\0' '\n' 2>/dev/null <"/proc/$1/environ" | sed -n 's/^SLURM_CONF=//p' | head -n1 || true
}

# our_pids NAME: live NAME processes of this cluster: the recorded PID plus any NAME
# process started with our SLURM_CONF (covers lost pid files). Children excluded.
our_pids() {
    local name=$1 pid recorded
    recorded=$(read_pid "$DIR/run/$name.pid")
    {
        if pid_is "$recorded" "$name"; then echo "$recorded"; fi
        for pid in $(pgrep -x "$name" || true); do
            if [[ $(conf_of "$pid") == "$CONF" ]]; then echo "$pid"; fi
        done
    } | sort -un
}

# stop_pid PID COMM NAME: SIGTERM, wait (bounded), then SIGKILL.
stop_pid() {
    local pid=$1 comm=$2 name=$3
    pid_is "$pid" "$comm" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_until "$STOP_TIMEOUT" pid_gone "$pid"; then
        warn "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_until 10 pid_gone "$pid" || warn "$name (pid $pid) is still there after SIGKILL"
    fi
    info "stopped $name (pid $pid)"
}

munge_ok() { munge -S "$DIR/munge/socket" -n 2>/dev/null | unmunge -S "$DIR/munge/socket" >/dev/null 2>&1; }
ctld_up() { timeout "$CLIENT_TIMEOUT" scontrol ping 2>/dev/null | grep -q 'is UP'; }
node_idle() { [[ $(timeout "$CLIENT_TIMEOUT" sinfo -h -N -o %T 2>/dev/null) == idle ]]; }
sched_ready() { grep -q '^\[[^]]*\] SchedulerParameters=' "$DIR/log/slurmctld.log" 2>/dev/null; }
job_ids() { timeout "$CLIENT_TIMEOUT" squeue -h -o %A 2>/dev/null; }
queue_empty() {
    local out
    out=$(timeout "$CLIENT_TIMEOUT" squeue -h -o %A 2>/dev/null) || return 1
    [[ -z $out ]]
}

# up_or_dead CHECK PID: CHECK succeeds, or PID died (stop waiting early).
up_or_dead() { "$1" || ! pid_alive "$2"; }

ensure_packages() {
    local missing=()
    local cmd
    for cmd in slurmctld slurmd munged mungekey munge unmunge sbatch squeue scontrol; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    ((${#missing[@]} == 0)) && return 0
    info "missing ${missing[*]}: installing slurm-wlm, munge (apt-get)"
    [[ $(id -u) == 0 ]] || { echo "$PROG: error: need root to install packages" >&2; exit 1; }
    apt-get -o DPkg::Lock::Timeout=300 update || { echo "$PROG: error: apt-get update failed" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 \
        slurm-wlm munge openssh-server openssh-client ||
        { echo "$PROG: error: apt-get install slurm-wlm munge failed" >&2; exit 1; }
}

# --- start ---------------------------------------------------------------------

STARTED=0   # set once we launched something, so that a failed start cleans up

fail_start() {
    echo "$PROG: error: $*" >&2
    local f
    for f in "$DIR"/log/slurmctld.log "$DIR"/log/slurmctld.out "$DIR"/log/slurmd.log \
        "$DIR"/log/slurmd.out "$DIR"/log/munged.log; do
        if [[ -s $f ]]; then
            echo "----- tail of $f -----" >&2
            tail -n 25 "$f" >&2
        fi
    done
    if ((STARTED)); then
        echo "$PROG: stopping what was started" >&2
        do_stop >&2 || true
    fi
    exit 1
}

check_conflicts() {
    local pid conf name
    for name in slurmctld slurmd; do
        for pid in $(pgrep -x "$name" || true); do
            pid_alive "$pid" || continue
            conf=$(conf_of "$pid")
            [[ $conf == "$CONF" ]] && continue
            # A daemon on other ports, or in another network namespace (the nodes of
            # scripts/slurm-nodes.sh), does not stand in this cluster's way.
            [[ $(readlink "/proc/$pid/ns/net" 2>/dev/null) == "$(readlink /proc/self/ns/net)" ]] ||
                continue
            local key=SlurmdPort default=6818 port=
            [[ $name == slurmctld ]] && key=SlurmctldPort default=6817
            port=$(sed -n "s/^[[:space:]]*${key}[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/Ip" \
                "$conf" 2>/dev/null | tail -n1)
            [[ -n $port && $port != "$default" ]] && continue
            echo "$PROG: error: another $name is already running (pid $pid," \
                "SLURM_CONF=${conf:-unset}); ports 6817/6818 are fixed, so only one" \
                "cluster can run at a time. Stop it first (e.g. $0 stop $(dirname "${conf:-/unknown/x}"))." >&2
            exit 1
        done
    done
    if command -v ss >/dev/null 2>&1 && [[ -z $(our_pids slurmctld) ]]; then
        local port
        for port in 6817 6818; do
            if [[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]]; then
                echo "$PROG: error: TCP port $port is already in use:" >&2
                ss -Hltnp "sport = :$port" >&2 || true
                exit 1
            fi
        done
    fi
}

write_conf() {
    local host mem
    host=$(hostname -s)
    mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]\+\).*/\1/p' | head -n1 || true)
    [[ $mem =~ ^[0-9]+$ ]] && ((mem > 0)) || mem=1024
    cat >"$CONF" <<EOF
# Written by scripts/slurm-cluster.sh: single-node test cluster, everything under $DIR.
ClusterName=ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/socket
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pidfile
SlurmdPidFile=$DIR/run/slurmd.pidfile
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
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
NodeName=$host NodeAddr=127.0.0.1 CPUs=16 RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    printf 'export SLURM_CONF=%q\n' "$CONF" >"$DIR/env"
}

# A munged of our own, on its own socket and key (AuthInfo in slurm.conf points every daemon
# and client at it): the machine's shared munged may be stopped by whoever started it (another
# checkout's test session) in the middle of ours.
start_munge() {
    local pid
    pid=$(read_pid "$DIR/run/munged.pid")
    if pid_is "$pid" munged && munge_ok; then
        info "munged of this cluster already answers (pid $pid)"
        return 0
    fi
    mkdir -p "$DIR/munge"
    chmod 0755 "$DIR" "$DIR/munge"   # munged wants every folder up to its socket searchable
    if [[ ! -s $DIR/munge/munge.key ]]; then
        mungekey --create --keyfile="$DIR/munge/munge.key" || fail_start "mungekey --create failed"
    fi
    # --force: a socket left by a munged of this folder that was killed.
    /usr/sbin/munged --foreground --force --key-file="$DIR/munge/munge.key" \
        --socket="$DIR/munge/socket" --pid-file="$DIR/munge/munged.pidfile" \
        --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/seed" \
        </dev/null >>"$DIR/log/munged.out" 2>&1 &
    echo $! >"$DIR/run/munged.pid"
    STARTED=1
    wait_until 10 munge_ok || fail_start "munged did not answer 'munge -n | unmunge' within 10s"
    info "munged up (pid $(read_pid "$DIR/run/munged.pid"))"
}

do_start() {
    local t0
    t0=$(now_ns)
    ensure_packages
    [[ $(id -u) == 0 ]] || { echo "$PROG: error: must run as root" >&2; exit 1; }
    mkdir -p "$DIR"/{state,spool,run,log}
    check_conflicts
    if [[ -n $(our_pids slurmctld) || -n $(our_pids slurmd) ]]; then
        export SLURM_CONF=$CONF
        if [[ -n $(our_pids slurmctld) && -n $(our_pids slurmd) ]] && ctld_up && node_idle; then
            info "cluster in $DIR is already running"
            return 0
        fi
        echo "$PROG: error: cluster in $DIR is partly running or not healthy;" \
            "run '$0 stop $DIR' first" >&2
        exit 1
    fi
    # A clean cluster every time: no old jobs, job ids restart at 1, fresh logs.
    # Keep the record of this cluster's munged if it is still running.
    local munged_pid f
    munged_pid=$(read_pid "$DIR/run/munged.pid")
    rm -rf "${DIR:?}"/state/* "${DIR:?}"/spool/* "${DIR:?}"/run/*
    if pid_is "$munged_pid" munged; then echo "$munged_pid" >"$DIR/run/munged.pid"; fi
    for f in "$DIR"/log/*; do
        if [[ -f $f && $f != *.prev ]]; then mv -f "$f" "$f.prev"; fi
    done
    write_conf
    export SLURM_CONF=$CONF
    start_munge

    /usr/sbin/slurmctld -D </dev/null >"$DIR/log/slurmctld.out" 2>&1 &
    echo $! >"$DIR/run/slurmctld.pid"
    STARTED=1
    local ctld
    ctld=$(read_pid "$DIR/run/slurmctld.pid")
    wait_until "$START_TIMEOUT" up_or_dead ctld_up "$ctld" || true
    pid_alive "$ctld" || fail_start "slurmctld (pid $ctld) exited during start-up"
    ctld_up || fail_start "slurmctld did not answer 'scontrol ping' within ${START_TIMEOUT}s"

    /usr/sbin/slurmd -D -N "$(hostname -s)" </dev/null >"$DIR/log/slurmd.out" 2>&1 &
    echo $! >"$DIR/run/slurmd.pid"
    local slurmd_pid
    slurmd_pid=$(read_pid "$DIR/run/slurmd.pid")
    wait_until "$START_TIMEOUT" up_or_dead node_idle "$slurmd_pid" || true
    pid_alive "$slurmd_pid" || fail_start "slurmd (pid $slurmd_pid) exited during start-up"
    node_idle || fail_start "node did not become idle within ${START_TIMEOUT}s" \
        "(sinfo: $(sinfo -h -N -o '%N %T %E' 2>&1 || true))"

    # slurmctld's scheduler makes its first pass ~3 s after start-up (it then logs its
    # SchedulerParameters); jobs submitted before that just wait. Wait for it, so that
    # the first job of a test starts as fast as later ones.
    wait_until 20 sched_ready ||
        warn "did not see slurmctld's first scheduling pass in slurmctld.log within 20s; going on"

    info "cluster up in $(awk -v a="$t0" -v b="$(now_ns)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')s:" \
        "slurmctld pid $ctld, slurmd pid $slurmd_pid; export SLURM_CONF=$CONF (or: . $DIR/env)"
}

# --- stop ----------------------------------------------------------------------

do_stop() {
    local t0 ctld slurmd_pid munged_pid pid ids
    t0=$(now_ns)
    export SLURM_CONF=$CONF
    ctld=$(our_pids slurmctld)
    slurmd_pid=$(our_pids slurmd)
    munged_pid=$(read_pid "$DIR/run/munged.pid")

    # Cancel all jobs first: running jobs (slurmstepd) outlive slurmd otherwise.
    if [[ -n $ctld && -f $CONF ]]; then
        ids=$(job_ids || true)
        if [[ -n $ids ]]; then
            info "cancelling jobs: $(echo "$ids" | tr '\n' ' ')"
            # shellcheck disable=SC2086 # word splitting wanted: one argument per job id
            timeout "$CLIENT_TIMEOUT" scancel $ids 2>/dev/null || true
            wait_until "$STOP_TIMEOUT" queue_empty ||
                warn "queue not empty after ${STOP_TIMEOUT}s: $(job_ids | tr '\n' ' ' || true)"
        fi
    fi

    for pid in $slurmd_pid; do stop_pid "$pid" slurmd slurmd; done
    for pid in $ctld; do stop_pid "$pid" slurmctld slurmctld; done
    if [[ -n $munged_pid ]]; then
        stop_pid "$munged_pid" munged munged
    fi

    # Step daemons of this cluster that survived (see pitfall 3 in the facts), with
    # the job processes under them (they would be orphaned, not killed, with the stepd).
    local tree p
    for pid in $(pgrep -x slurmstepd || true); do
        if [[ $(conf_of "$pid") == "$CONF" ]]; then
            tree=$(descendants "$pid")
            warn "killing leftover slurmstepd pid $pid" \
                "($(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" || true)) and its" \
                "processes: $(echo "$tree" | tr '\n' ' ')"
            kill -STOP "$pid" 2>/dev/null || true   # no more forks while we collect
            tree=$(descendants "$pid")
            for p in $tree "$pid"; do kill -KILL "$p" 2>/dev/null || true; done
            for p in $tree "$pid"; do
                wait_until 10 pid_gone "$p" || warn "pid $p is still there after SIGKILL"
            done
        fi
    done
    rm -f "$DIR"/run/*.pid

    info "stopped in $(awk -v a="$t0" -v b="$(now_ns)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')s"
}

# --- status --------------------------------------------------------------------

do_status() {
    export SLURM_CONF=$CONF
    if [[ -n $(our_pids slurmctld) && -f $CONF ]] && ctld_up; then
        [[ -n $(our_pids slurmd) ]] || warn "slurmd is not running"
        timeout "$CLIENT_TIMEOUT" sinfo
        return 0
    fi
    echo "slurm cluster in $DIR is down"
    return 1
}

# --- main ----------------------------------------------------------------------

(($# == 2)) || usage
ACTION=$1
DIR=$(realpath -m -- "$2")
CONF=$DIR/slurm.conf

case $ACTION in
start) do_start ;;
stop)
    if [[ ! -d $DIR ]]; then
        info "nothing to stop in $DIR"
        exit 0
    fi
    do_stop
    ;;
status)
    do_status || exit 1
    ;;
*) usage ;;
esac
