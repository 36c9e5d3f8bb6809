#!/usr/bin/env bash
# A real single-node SLURM cluster (with accounting) on this machine, for the SLURM tests.
#
#   tests/slurm/cluster.sh start DIR   # install packages if missing, configure, start, wait idle
#   tests/slurm/cluster.sh stop DIR    # stop exactly the daemons that `start DIR` started
#   tests/slurm/cluster.sh env DIR     # print `export SLURM_CONF=...` for clients (sbatch, sinfo)
#
# Everything (configuration, state, spool, logs, PIDs, MariaDB data, munge socket) lives under
# DIR; clients find the cluster through SLURM_CONF=DIR/etc/slurm.conf. Daemons run in the
# background with their PIDs in DIR/pids/*.pid; `stop` kills only those PIDs. No systemd is
# needed. Debian's SLURM 22.05 + MariaDB + munge (docs/slurm.md lists the traps).
#
# Exit codes: 0 ok; 2 usage; 3 the packages are missing and cannot be installed (not root, no
# apt-get, or apt-get fails): callers treat 3 as "this machine cannot host a cluster";
# 1 any other failure (the message names the daemon and its log).
set -uo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
# Programs that must exist after installation.
PROGRAMS=(slurmctld slurmd slurmdbd sinfo sbatch squeue scancel sacct sacctmgr munged munge unmunge mariadbd mariadb-install-db mariadb)

APT_TIMEOUT=${RNNBENCH_SLURM_APT_TIMEOUT:-600}   # seconds for each apt-get call
START_TIMEOUT=${RNNBENCH_SLURM_START_TIMEOUT:-90} # seconds for each daemon to come up
STOP_TIMEOUT=${RNNBENCH_SLURM_STOP_TIMEOUT:-20}   # seconds before SIGKILL on stop

log() { echo "cluster.sh: $*" >&2; }
die() { local code=$1; shift; log "ERROR: $*"; exit "$code"; }

usage() {
    echo "usage: $0 start|stop|env DIR" >&2
    exit 2
}

missing_programs() {
    local p out=()
    for p in "${PROGRAMS[@]}"; do
        command -v "$p" >/dev/null 2>&1 || out+=("$p")
    done
    echo "${out[@]:-}"
}

install_packages() {
    local missing
    missing=$(missing_programs)
    [[ -z "$missing" ]] && return 0
    log "missing programs: $missing; installing Debian packages: ${PACKAGES[*]}"
    [[ $(id -u) -eq 0 ]] || die 3 "cannot install SLURM packages: not root (missing: $missing)"
    command -v apt-get >/dev/null 2>&1 || die 3 "cannot install SLURM packages: no apt-get (missing: $missing)"
    export DEBIAN_FRONTEND=noninteractive
    local apt_log
    apt_log=$(mktemp /tmp/rnnbench-slurm-apt.XXXXXX.log)
    # Daemons must not be started by the packages' maintainer scripts (there is no init system
    # anyway; policy-rc.d 101 forbids it explicitly). Only add one if none exists.
    local policy_added=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy_added=1
    fi
    local ok=0
    if timeout -k 10 "$APT_TIMEOUT" apt-get install -y -q "${PACKAGES[@]}" >>"$apt_log" 2>&1; then
        ok=1
    else
        log "apt-get install failed; trying apt-get update first (log: $apt_log)"
        if timeout -k 10 "$APT_TIMEOUT" apt-get update -q >>"$apt_log" 2>&1 &&
            timeout -k 10 "$APT_TIMEOUT" apt-get install -y -q "${PACKAGES[@]}" >>"$apt_log" 2>&1; then
            ok=1
        fi
    fi
    [[ $policy_added -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
    if [[ $ok -ne 1 ]]; then
        tail -n 20 "$apt_log" >&2
        die 3 "cannot install SLURM packages with apt-get (log: $apt_log)"
    fi
    missing=$(missing_programs)
    [[ -z "$missing" ]] || die 3 "packages installed but programs still missing: $missing"
    rm -f "$apt_log"
}

free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

# Start "$@" in the background, its output to LOG, PID to DIR/pids/NAME.pid.
spawn() {
    local name=$1 logfile=$2
    shift 2
    setsid "$@" </dev/null >>"$logfile" 2>&1 &
    echo $! > "$DIR/pids/$name.pid"
}

pid_alive() { [[ -f "$DIR/pids/$1.pid" ]] && kill -0 "$(cat "$DIR/pids/$1.pid")" 2>/dev/null; }

# wait_for NAME DESCRIPTION LOG CMD...: poll CMD until it succeeds, the daemon dies, or timeout.
wait_for() {
    local name=$1 what=$2 logfile=$3
    shift 3
    local deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        if ! pid_alive "$name"; then
            tail -n 30 "$logfile" >&2
            die 1 "$name exited while waiting for $what (log: $logfile)"
        fi
        sleep 0.5
    done
    tail -n 30 "$logfile" >&2
    die 1 "timed out after ${START_TIMEOUT}s waiting for $what (log: $logfile)"
}

node_idle() { [[ "$(timeout 10 sinfo -h -o %t 2>/dev/null | head -n1)" == idle ]]; }

write_config() {
    local host mem ctld_port slurmd_port dbd_port db_port avail_kb
    host=$(hostname -s)
    avail_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
    mem=$((avail_kb * 8 / 10 / 1024))
    local cpus
    cpus=$(nproc)
    ctld_port=$(free_port); slurmd_port=$(free_port); dbd_port=$(free_port); db_port=$(free_port)
    echo "$db_port" > "$DIR/etc/db_port"
    DB_PASS=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    echo "$DB_PASS" > "$DIR/etc/db_pass"; chmod 600 "$DIR/etc/db_pass"

    cat > "$DIR/etc/slurm.conf" <<EOF
# Written by tests/slurm/cluster.sh: a one-node cluster under $DIR
ClusterName=rnnbench
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$dbd_port
# With slurmdbd and munge this names the munge socket that clients (sacct, sacctmgr) use.
AccountingStoragePass=$DIR/munge/munge.socket.2
JobCompType=jobcomp/none
MailProg=/bin/true
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=300
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

    # Read by slurmd from the directory of slurm.conf; unused with proctrack/linuxproc and
    # task/none (no systemd, no delegated cgroup tree here), written so nothing falls back to
    # /etc/slurm.
    cat > "$DIR/etc/cgroup.conf" <<EOF
# Written by tests/slurm/cluster.sh; cgroups are not used (proctrack/linuxproc, task/none).
CgroupAutomount=no
ConstrainCores=no
ConstrainRAMSpace=no
EOF

    cat > "$DIR/etc/slurmdbd.conf" <<EOF
# Written by tests/slurm/cluster.sh
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$dbd_port
SlurmUser=root
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/etc/slurmdbd.conf"
}

# Jobs must find the cluster too: the executor plugin's job step (snakemake-executor-plugin-
# slurm-jobstep 0.6) removes every SLURM_* variable, SLURM_CONF included, before its inner
# `srun`, which then reads the compiled-in default /etc/slurm/slurm.conf (as on a real cluster).
# So /etc/slurm/slurm.conf becomes a symlink to DIR/etc/slurm.conf while the cluster runs; an
# existing file that is not such a link is never touched (error instead).
ETC_CONF=/etc/slurm/slurm.conf

link_etc_conf() {
    local target="$DIR/etc/slurm.conf"
    if [[ -L "$ETC_CONF" ]]; then
        local cur
        cur=$(readlink "$ETC_CONF")
        if [[ -e "$cur" && "$cur" != "$target" ]]; then
            local other=${cur%/etc/slurm.conf}
            if compgen -G "$other/pids/*.pid" >/dev/null; then
                die 1 "$ETC_CONF links to a running test cluster ($cur); stop it first: $0 stop $other"
            fi
            [[ "$cur" == */etc/slurm.conf ]] ||
                die 1 "$ETC_CONF is a link to $cur, not made by this script; not replacing it"
        fi
        rm -f "$ETC_CONF"
    elif [[ -e "$ETC_CONF" ]]; then
        die 1 "$ETC_CONF exists (another SLURM installation?); jobs of the executor plugin read it instead of SLURM_CONF, so this test cluster cannot run beside it. Move it away to run the SLURM tests."
    fi
    mkdir -p /etc/slurm
    ln -s "$target" "$ETC_CONF" || die 1 "cannot create $ETC_CONF -> $target"
}

unlink_etc_conf() {
    if [[ -L "$ETC_CONF" && "$(readlink "$ETC_CONF")" == "$DIR/etc/slurm.conf" ]]; then
        rm -f "$ETC_CONF"
    fi
}

start() {
    [[ -d "$DIR" ]] || mkdir -p "$DIR" || die 1 "cannot create $DIR"
    DIR=$(cd "$DIR" && pwd)
    if compgen -G "$DIR/pids/*.pid" >/dev/null; then
        for f in "$DIR"/pids/*.pid; do
            kill -0 "$(cat "$f")" 2>/dev/null && die 1 "a cluster already runs from $DIR (stop it first)"
        done
        rm -f "$DIR"/pids/*.pid
    fi
    # Daemons run as root/munge, and /etc/slurm/slurm.conf is linked: root only.
    [[ $(id -u) -eq 0 ]] || die 3 "a test SLURM cluster needs root (starts munged/slurmd as root); running as $(id -un)"
    install_packages

    mkdir -p "$DIR"/{etc,state,spool,log,run,pids,munge,mysql}
    # munged runs as the munge user: it must reach its socket directory under DIR.
    chmod 755 "$DIR"
    chown munge:munge "$DIR/munge" && chmod 755 "$DIR/munge"
    if ! setpriv --reuid=munge --regid=munge --init-groups test -w "$DIR/munge"; then
        die 1 "the munge user cannot reach $DIR/munge: put DIR under a world-traversable path (e.g. mktemp -d /tmp/x.XXXX)"
    fi
    write_config
    link_etc_conf
    export SLURM_CONF="$DIR/etc/slurm.conf"
    local db_port
    db_port=$(cat "$DIR/etc/db_port")

    # 1. munge (authentication), as the munge user, key from the package.
    [[ -r /etc/munge/munge.key ]] || die 1 "/etc/munge/munge.key missing (package munge not configured?)"
    spawn munged "$DIR/log/munged.out" setpriv --reuid=munge --regid=munge --init-groups \
        munged -F --socket="$DIR/munge/munge.socket.2" --pid-file="$DIR/munge/munged.pid" \
        --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed"
    wait_for munged "munge credentials" "$DIR/log/munged.out" \
        bash -c "munge -n --socket='$DIR/munge/munge.socket.2' | unmunge --socket='$DIR/munge/munge.socket.2'"

    # 2. MariaDB for slurmdbd, data under DIR, TCP on 127.0.0.1 only.
    timeout 120 mariadb-install-db --no-defaults --user=root --datadir="$DIR/mysql" \
        --auth-root-authentication-method=socket >"$DIR/log/mariadb-install.log" 2>&1 ||
        { tail -n 20 "$DIR/log/mariadb-install.log" >&2; die 1 "mariadb-install-db failed (log: $DIR/log/mariadb-install.log)"; }
    spawn mariadbd "$DIR/log/mariadbd.log" mariadbd --no-defaults --user=root \
        --datadir="$DIR/mysql" --socket="$DIR/run/mysqld.sock" --pid-file="$DIR/run/mysqld.pid" \
        --bind-address=127.0.0.1 --port="$db_port" --innodb-buffer-pool-size=128M \
        --innodb-lock-wait-timeout=900 --skip-name-resolve
    wait_for mariadbd "MariaDB" "$DIR/log/mariadbd.log" \
        mariadb --no-defaults --socket="$DIR/run/mysqld.sock" -uroot -e "SELECT 1"
    timeout 30 mariadb --no-defaults --socket="$DIR/run/mysqld.sock" -uroot -e "
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$(cat "$DIR/etc/db_pass")';
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$(cat "$DIR/etc/db_pass")';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
        FLUSH PRIVILEGES;" || die 1 "cannot create the slurm database user"

    # 3. slurmdbd (accounting: sacct works, so the executor plugin's status checks work).
    spawn slurmdbd "$DIR/log/slurmdbd.out" slurmdbd -D
    wait_for slurmdbd "slurmdbd" "$DIR/log/slurmdbd.log" \
        timeout 10 sacctmgr -n -i list cluster

    # 4. slurmctld (registers the cluster with slurmdbd), 5. slurmd.
    spawn slurmctld "$DIR/log/slurmctld.out" slurmctld -D -i
    wait_for slurmctld "slurmctld" "$DIR/log/slurmctld.log" timeout 10 sinfo -h
    spawn slurmd "$DIR/log/slurmd.out" slurmd -D
    wait_for slurmd "node idle (sinfo -h -o %t)" "$DIR/log/slurmd.log" node_idle
    # Accounting must know the cluster (slurmctld registers it) before jobs can be queried.
    wait_for slurmctld "cluster registered in accounting" "$DIR/log/slurmctld.log" \
        bash -c "timeout 10 sacctmgr -n -P list cluster format=cluster | grep -qx rnnbench"
    log "cluster up: SLURM_CONF=$SLURM_CONF ($(sinfo -h -o '%N %c CPUs %m MB %t'))"
}

stop() {
    [[ -d "$DIR" ]] || die 1 "no such directory: $DIR"
    DIR=$(cd "$DIR" && pwd)
    local name f pid rc=0
    # Cancel whatever still runs on this private cluster, so that no job step outlives slurmd.
    if pid_alive slurmctld; then
        SLURM_CONF="$DIR/etc/slurm.conf" timeout 10 scancel --user="$(id -un)" >/dev/null 2>&1
        local deadline=$((SECONDS + 15))
        while ((SECONDS < deadline)) &&
            [[ -n "$(SLURM_CONF="$DIR/etc/slurm.conf" timeout 10 squeue -h -o %i 2>/dev/null)" ]]; do
            sleep 0.5
        done
    fi
    # Reverse start order: compute nodes first, the database last.
    for name in slurmd slurmctld slurmdbd mariadbd munged; do
        f="$DIR/pids/$name.pid"
        [[ -f "$f" ]] || continue
        pid=$(cat "$f")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null
            local deadline=$((SECONDS + STOP_TIMEOUT))
            while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
            if kill -0 "$pid" 2>/dev/null; then
                log "$name (pid $pid) did not stop in ${STOP_TIMEOUT}s; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null
                sleep 0.5
                kill -0 "$pid" 2>/dev/null && { log "$name (pid $pid) survives SIGKILL"; rc=1; }
            fi
        fi
        rm -f "$f"
    done
    unlink_etc_conf
    log "cluster in $DIR stopped"
    return $rc
}

[[ $# -eq 2 ]] || usage
CMD=$1
DIR=$2
case "$CMD" in
    start) start ;;
    stop) stop ;;
    env) echo "export SLURM_CONF=$(cd "$DIR" && pwd)/etc/slurm.conf" ;;
    *) usage ;;
esac
