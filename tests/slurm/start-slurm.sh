#!/bin/sh
# A one-node SLURM cluster on this machine, for tests/test_cluster.py:
# munged, slurmctld and slurmd run directly (no systemd), talking over
# loopback only; partition "debug" holds this node.  Needs root and the
# Debian packages slurm-wlm and munge.
#
# Idempotent: does nothing when sinfo already shows an idle node (the
# daemons keep running after the tests; later runs find them).  Prints
# "slurm ready" (exit 0) once the node is idle, or why not (exit 1).
set -u

ready() {
    sinfo -h -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)'
}

if ready; then
    echo "slurm ready (already running)"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "start-slurm.sh: needs root" >&2
    exit 1
fi
for p in munged slurmctld slurmd sinfo; do
    command -v $p >/dev/null 2>&1 || [ -x /usr/sbin/$p ] || {
        echo "start-slurm.sh: $p missing (apt-get install slurm-wlm munge)" >&2
        exit 1
    }
done
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

# --- munge: a key owned by munge, and the daemon
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null
fi
mkdir -p /var/log/munge /var/lib/munge /run/munge
chown -R munge:munge /etc/munge /var/log/munge /var/lib/munge /run/munge
chmod 0700 /etc/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    rm -f /run/munge/munge.socket.2 /run/munge/munged.pid
    runuser -u munge -- munged || { echo "start-slurm.sh: munged failed" >&2; exit 1; }
    i=0
    until munge -n 2>/dev/null | unmunge >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -gt 50 ] && { echo "start-slurm.sh: munge does not answer" >&2; exit 1; }
        sleep 0.1
    done
fi

# --- slurm.conf for this one node
HOST=$(hostname -s)
CPUS=$(nproc)
# RealMemory a bit below what is free, or slurmd drains the node
MEM=$(awk '/^MemAvailable:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
cat > /etc/slurm/slurm.conf <<CONF
# written by cplrun tests/slurm/start-slurm.sh: a one-node test cluster
ClusterName=cplrun-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=30
KillWait=5
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

# --- the daemons (each forks into the background by itself)
pgrep -x slurmctld >/dev/null 2>&1 || slurmctld || {
    echo "start-slurm.sh: slurmctld failed:" >&2
    tail -20 /var/log/slurm/slurmctld.log >&2
    exit 1
}
pgrep -x slurmd >/dev/null 2>&1 || slurmd -N "$HOST" || {
    echo "start-slurm.sh: slurmd failed:" >&2
    tail -20 /var/log/slurm/slurmd.log >&2
    exit 1
}

i=0
until ready; do
    i=$((i + 1))
    state=$(sinfo -h -o '%t' 2>/dev/null | head -1)
    case "$state" in
        down*|drain*|drng*|fail*)
            scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 ;;
    esac
    if [ $i -gt 120 ]; then
        echo "start-slurm.sh: the node is not idle after 60 s (state: $state)" >&2
        tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2
        exit 1
    fi
    sleep 0.5
done
echo "slurm ready"
