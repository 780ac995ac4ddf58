#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on this machine, for testing profiles/slurm (README.md,
# "On a SLURM cluster").
#
#   bash tests/slurm/cluster.sh up       # install (if missing), configure and start; wait for the node
#   bash tests/slurm/cluster.sh status   # daemons, node state, jobs
#   bash tests/slurm/cluster.sh down     # stop exactly the daemons `up` started
#
# Runs as root, without systemd: every daemon is started here with its own PID file, log and
# socket under the state directory, so `down` stops exactly those. The node has as many CPUs as
# `nproc`, a bit less memory than the machine, and fake GPUs (gres `gpu`, device files that are
# links to /dev/null): jobs that ask for a GPU are scheduled and see CUDA_VISIBLE_DEVICES, but
# have no CUDA. Accounting: slurmdbd on a private MariaDB by default, so `sacct` works and the
# slurm executor plugin's default status command needs no change (MNIST_SGD_SLURM_ACCOUNTING=none
# leaves it out: then only `squeue` knows jobs, for MinJobAge seconds).
#
# Environment (all optional):
#   MNIST_SGD_SLURM_DIR         state directory (default /tmp/mnist-sgd-slurm)
#   MNIST_SGD_SLURM_ACCOUNTING  slurmdbd (default) or none
#   MNIST_SGD_SLURM_GPUS        fake GPUs on the node (default 2)
#   MNIST_SGD_SLURM_PORT        first of the four TCP ports used on 127.0.0.1: slurmctld, slurmd,
#                               slurmdbd, MariaDB (default 6817, i.e. 6817-6820)
#   MNIST_SGD_SLURM_TIMEOUT     seconds `up` waits for each daemon and for the node (default 60)
set -euo pipefail

STATE=${MNIST_SGD_SLURM_DIR:-/tmp/mnist-sgd-slurm}
ACCOUNTING=${MNIST_SGD_SLURM_ACCOUNTING:-slurmdbd}
GPUS=${MNIST_SGD_SLURM_GPUS:-2}
PORT=${MNIST_SGD_SLURM_PORT:-6817}
TIMEOUT=${MNIST_SGD_SLURM_TIMEOUT:-60}
NODE=localhost
CLUSTER=mnistsgd
ETC=$STATE/etc
CONF=$ETC/slurm.conf
DEFAULT_CONF=${MNIST_SGD_SLURM_DEFAULT_CONF:-/etc/slurm/slurm.conf}  # where sbatch, squeue, sacct, srun look without SLURM_CONF
DEFAULT_DIR=$(dirname "$DEFAULT_CONF")
MARKER="# written by mnist-sgd tests/slurm/cluster.sh"
export SLURM_CONF=$CONF  # this script's own client calls

log() { echo "cluster.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
NOT_INSTALLED=4  # up's exit status when the SLURM packages are missing and installing them was not asked for

case $ACCOUNTING in slurmdbd | none) ;; *) die "MNIST_SGD_SLURM_ACCOUNTING must be slurmdbd or none" ;; esac
case $STATE in /*) ;; *) die "MNIST_SGD_SLURM_DIR must be an absolute path" ;; esac

# --- processes -------------------------------------------------------------------------------------

# The daemons this script manages, in start order: name (as in /proc/PID/comm) and PID file.
daemons() {
  echo "munged $STATE/run/munged.pid"
  if [[ $ACCOUNTING == slurmdbd ]]; then
    echo "mariadbd $STATE/run/mariadbd.pid"
    echo "slurmdbd $STATE/run/slurmdbd.pid"
  fi
  echo "slurmctld $STATE/run/slurmctld.pid"
  echo "slurmd $STATE/run/slurmd.pid"
}

# Whether process $1 exists and is not a zombie (an orphaned daemon that exited stays a zombie
# until PID 1 reaps it, which some container init processes never do).
alive() {
  local state
  state=$(sed -n 's/^.*) \([A-Za-z]\).*$/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# The PID in $2 if it is a live process named $1 (guards against stale files and reused PIDs).
live_pid() {
  local name=$1 file=$2 pid
  [[ -s $file ]] || return 1
  pid=$(tr -dc 0-9 <"$file")
  [[ -n $pid ]] && alive "$pid" || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name"* ]] || return 1
  echo "$pid"
}

running() { live_pid "$1" "$2" >/dev/null; }

# Wait up to $TIMEOUT seconds for the command "$@" to succeed.
wait_for() {
  local what=$1 deadline=$((SECONDS + TIMEOUT))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "gave up waiting for $what after ${TIMEOUT}s"; return 1; }
    sleep 0.5
  done
}

# Wait like wait_for, but give up as soon as daemon $1 (PID file $2) has died after starting.
wait_for_daemon() {
  local name=$1 file=$2 deadline=$((SECONDS + TIMEOUT)) started=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    if ((SECONDS - started >= 3)) && ! running "$name" "$file"; then return 1; fi
    sleep 0.5
  done
}

stop() {
  local name=$1 file=$2 pid deadline
  if ! pid=$(live_pid "$name" "$file"); then
    rm -f "$file"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + 30))
  while alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
  if alive "$pid"; then
    log "$name (pid $pid) ignored SIGTERM for 30 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    alive "$pid" && die "could not stop $name (pid $pid)"
  fi
  rm -f "$file"
}

# --- installation ----------------------------------------------------------------------------------

install_packages() {
  local wanted=(slurmctld slurmd slurm-client munge) missing=() package
  [[ $ACCOUNTING == slurmdbd ]] && wanted+=(slurmdbd mariadb-server)
  for package in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  ((${#missing[@]})) || return 0
  # Only where asked (.ci/run asks): a user's `pytest` never installs system packages.
  if [[ ${MNIST_SGD_INSTALL_SLURM:-} != 1 ]]; then
    log "error: ${missing[*]} not installed; install them, or set MNIST_SGD_INSTALL_SLURM=1 to let this script apt-get them"
    exit $NOT_INSTALLED
  fi
  command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} yourself"
  log "installing ${missing[*]}"
  # Packages' maintainer scripts must not start their own munged, mysqld or slurm daemons (they
  # would outlive `down`): forbid service starts while installing, as Debian's policy-rc.d allows.
  local policy=/usr/sbin/policy-rc.d added_policy=
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added_policy=1
  fi
  local status=0
  {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >"$STATE/apt.log" 2>&1 ||
      { apt-get update -q >>"$STATE/apt.log" 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$STATE/apt.log" 2>&1; }
  } || status=$?
  [[ -n $added_policy ]] && rm -f "$policy"
  ((status == 0)) || { tail -20 "$STATE/apt.log" >&2; die "apt-get install failed (log: $STATE/apt.log)"; }
}

# --- configuration ---------------------------------------------------------------------------------

# Write $2 to $1 when its content differs; return 0 when it changed.
put() {
  if [[ -f $1 ]] && [[ $(cat "$1") == "$2" ]]; then return 1; fi
  printf '%s\n' "$2" >"$1"
  return 0
}

write_config() {
  local cpus mem_mb real_mb def_mem changed=1 i gres_lines="" host
  cpus=$(nproc)
  # slurmctld must run on a host named in SlurmctldHost: this one's short name (no DNS lookup).
  host=$(uname -n)
  host=${host%%.*}
  mem_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
  # Leave the OS and the submitting Snakemake some memory: 10%, at least 512 MB.
  real_mb=$((mem_mb - (mem_mb / 10 > 512 ? mem_mb / 10 : 512)))
  def_mem=$((real_mb / cpus / 2))  # a job that gives no --mem gets half its CPUs' share
  mkdir -p "$STATE/dev"
  for ((i = 0; i < GPUS; i++)); do
    ln -sfn /dev/null "$STATE/dev/nvidia$i"
  done
  local node_gres=""
  if ((GPUS > 0)); then
    gres_lines="GresTypes=gpu"
    node_gres="Gres=gpu:$GPUS"
  fi
  local accounting
  if [[ $ACCOUNTING == slurmdbd ]]; then
    accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((PORT + 2))
# The munge socket for talking to slurmdbd (AuthInfo covers only slurmctld and slurmd).
AccountingStoragePass=$STATE/munge/munge.socket
# sacct shows the plugin's --comment (rule and wildcards) with -o Comment.
AccountingStoreFlags=job_comment
# GPUs in each job's TRES (sacct -o ReqTRES,AllocTRES); needs slurmdbd.
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10"
  else
    accounting="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
  fi
  put "$CONF" "$MARKER
# Single node, root only, no systemd or cgroups; every path is under $STATE.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/munge/munge.socket
StateSaveLocation=$STATE/spool/slurmctld
SlurmdSpoolDir=$STATE/spool/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: track job processes by /proc, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobContainerType=job_container/none
MpiDefault=none
SwitchType=switch/none
LaunchParameters=use_interactive_step
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$def_mem
# A finished job stays visible to squeue (and scontrol) for an hour; sacct has it for good.
MinJobAge=3600
ReturnToService=2
SlurmdTimeout=300
InactiveLimit=0
KillWait=5
Waittime=0
$accounting
JobCompType=jobcomp/none
MailProg=/bin/true
$gres_lines
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$cpus RealMemory=$real_mb $node_gres State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP" && changed=0
  local gres="$MARKER"
  if ((GPUS > 0)); then
    gres+="
NodeName=$NODE Name=gpu File=$STATE/dev/nvidia[0-$((GPUS - 1))]"
  fi
  put "$ETC/gres.conf" "$gres" && changed=0
  # Nothing here uses cgroups (proctrack/linuxproc, task/none), but slurmd 22.05 loads a cgroup
  # plugin anyway and stops when it fails: v1's loads even where /sys/fs/cgroup is empty or v2 only.
  put "$ETC/cgroup.conf" "$MARKER
CgroupPlugin=cgroup/v1" && changed=0
  if [[ $ACCOUNTING == slurmdbd ]]; then
    put "$ETC/slurmdbd.conf" "$MARKER
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((PORT + 2))
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((PORT + 3))
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db" && changed=0
    chmod 600 "$ETC/slurmdbd.conf"
  fi
  return $changed
}

# Let sbatch, squeue, sacct... find the configuration without SLURM_CONF: link Debian's default
# path to it. That path must not hold another cluster's slurm.conf (refuse_foreign_conf).
link_default_conf() {
  local name target
  for name in slurm.conf gres.conf cgroup.conf; do
    target=$DEFAULT_DIR/$name
    if [[ -L $target && $(readlink "$target") == "$ETC/$name" ]]; then continue; fi
    if [[ -e $target || -L $target ]]; then continue; fi  # gres.conf, cgroup.conf of another install
    mkdir -p "$DEFAULT_DIR"
    ln -s "$ETC/$name" "$target"
  done
}

# The SLURM plugin's job steps (snakemake-executor-plugin-slurm-jobstep) start `srun` with every
# SLURM_* variable but a few removed, SLURM_CONF among them: inside a job, srun reads the default
# path. If that is another cluster's configuration, jobs fail on its munge socket; refuse up front.
FOREIGN_CONF=3  # up's exit status then
refuse_foreign_conf() {
  local target=$DEFAULT_CONF
  if [[ -L $target && $(readlink "$target") == "$ETC/slurm.conf" ]]; then return 0; fi
  if [[ -e $target || -L $target ]]; then
    log "error: $target is another cluster's configuration; srun inside the jobs would read it (the"
    log "SLURM plugin's job steps drop SLURM_CONF). Move it aside while testing, and back when done:"
    log "  mv $target $target.saved   # ... bash $0 down; mv $target.saved $target"
    exit $FOREIGN_CONF
  fi
}

unlink_default_conf() {
  local name
  for name in slurm.conf gres.conf cgroup.conf; do
    if [[ -L $DEFAULT_DIR/$name && $(readlink "$DEFAULT_DIR/$name") == "$ETC/$name" ]]; then
      rm -f "$DEFAULT_DIR/$name"
    fi
  done
}

# --- daemons ---------------------------------------------------------------------------------------

start_munged() {
  running munged "$STATE/run/munged.pid" && return 0
  if [[ ! -s $STATE/munge/munge.key ]]; then
    dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$STATE/munge/munge.key"
  fi
  rm -f "$STATE/munge/munge.socket" "$STATE/munge/munge.socket.lock"
  munged --force --key-file="$STATE/munge/munge.key" --socket="$STATE/munge/munge.socket" \
    --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" \
    --seed-file="$STATE/munge/munged.seed"
  wait_for munged running munged "$STATE/run/munged.pid" || die "munged did not start (log: $STATE/log/munged.log)"
}

mysql_client() { mariadb --no-defaults --protocol=socket --socket="$STATE/mysql/mysqld.sock" -uroot "$@"; }

start_mariadb() {
  running mariadbd "$STATE/run/mariadbd.pid" && return 0
  if [[ ! -d $STATE/mysql/data/mysql ]]; then
    mkdir -p "$STATE/mysql/data"
    mariadb-install-db --no-defaults --datadir="$STATE/mysql/data" --user=root \
      --auth-root-authentication-method=socket --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1 ||
      die "mariadb-install-db failed (log: $STATE/log/mariadb-install.log)"
  fi
  # Its own socket, port and PID file; only 127.0.0.1 is bound.
  nohup mariadbd --no-defaults --user=root --datadir="$STATE/mysql/data" \
    --socket="$STATE/mysql/mysqld.sock" --pid-file="$STATE/run/mariadbd.pid" \
    --bind-address=127.0.0.1 --port=$((PORT + 3)) --skip-name-resolve \
    --log-error="$STATE/log/mariadb.log" --innodb-buffer-pool-size=64M \
    --innodb-log-file-size=48M --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 &
  wait_for mariadb mysql_client -e "SELECT 1" || die "MariaDB did not start (log: $STATE/log/mariadb.log)"
  mysql_client -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start_slurmdbd() {
  running slurmdbd "$STATE/run/slurmdbd.pid" && return 0
  SLURM_CONF=$CONF slurmdbd >"$STATE/log/slurmdbd.out" 2>&1 || true
  wait_for slurmdbd running slurmdbd "$STATE/run/slurmdbd.pid" || die "slurmdbd did not start (log: $STATE/log/slurmdbd.log)"
  # slurmdbd answers once it has created its tables.
  wait_for_daemon slurmdbd "$STATE/run/slurmdbd.pid" sacctmgr -n list cluster || die "slurmdbd does not answer (log: $STATE/log/slurmdbd.log)"
  if [[ -z $(sacctmgr -n -P list cluster format=cluster where cluster=$CLUSTER) ]]; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
}

start_slurmctld() {
  running slurmctld "$STATE/run/slurmctld.pid" && return 0
  slurmctld -f "$CONF" >"$STATE/log/slurmctld.out" 2>&1 || die "slurmctld failed: $(cat "$STATE/log/slurmctld.out")"
  wait_for_daemon slurmctld "$STATE/run/slurmctld.pid" scontrol ping || die "slurmctld does not answer (log: $STATE/log/slurmctld.log)"
}

start_slurmd() {
  running slurmd "$STATE/run/slurmd.pid" && return 0
  slurmd -f "$CONF" -N "$NODE" >"$STATE/log/slurmd.out" 2>&1 || die "slurmd failed: $(cat "$STATE/log/slurmd.out")"
  wait_for slurmd running slurmd "$STATE/run/slurmd.pid" || die "slurmd did not start (log: $STATE/log/slurmd.log)"
}

node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -1; }

wait_for_node() {
  local state deadline=$((SECONDS + TIMEOUT))
  while :; do
    state=$(node_state)
    case $state in
      idle | mixed | allocated) return 0 ;;
      *drain* | *down* | *fail*)
        # Left drained or down by an earlier run (or a restart): put it back in service.
        log "node $NODE is $state; resuming it"
        scontrol update nodename="$NODE" state=resume 2>/dev/null || true
        ;;
    esac
    ((SECONDS < deadline)) || { scontrol show node "$NODE" >&2 || true; die "node $NODE not idle after ${TIMEOUT}s (state: ${state:-none})"; }
    sleep 0.5
  done
}

# --- subcommands -----------------------------------------------------------------------------------

up() {
  [[ $(id -u) == 0 ]] || die "run as root (the daemons run as root)"
  refuse_foreign_conf
  local start=$SECONDS
  mkdir -p "$STATE"/{etc,run,log,munge,spool/slurmctld,spool/slurmd}
  chmod 755 "$STATE/munge"  # the socket must be reachable by every user; the key itself is 0400
  install_packages
  if write_config; then
    # The configuration changed under running daemons: restart them with the new one.
    local any=0 name file
    while read -r name file; do running "$name" "$file" && any=1; done < <(daemons)
    if ((any)); then
      log "configuration changed; restarting the daemons"
      down_daemons
    fi
  fi
  start_munged
  if [[ $ACCOUNTING == slurmdbd ]]; then
    start_mariadb
    start_slurmdbd
  fi
  start_slurmctld
  start_slurmd
  wait_for_node
  log "up in $((SECONDS - start)) s: node $NODE $(node_state), $(nproc) CPUs, gres gpu:$GPUS, accounting: $ACCOUNTING"
  log "configuration: $CONF (logs: $STATE/log)"
  link_default_conf
  log "linked from $DEFAULT_CONF: sbatch, squeue and sacct find it without SLURM_CONF"
  # Standard output holds only this line, so that `eval "$(cluster.sh up)"` works in either case.
  echo "export SLURM_CONF=$CONF"
}

no_active_jobs() { [[ -z $(squeue -h -t configuring,running,completing -o %A 2>/dev/null) ]]; }

down_daemons() {
  # Cancel this cluster's jobs first, so that no slurmstepd outlives slurmd.
  if running slurmctld "$STATE/run/slurmctld.pid"; then
    local jobs
    jobs=$(squeue -h -o %A 2>/dev/null || true)
    if [[ -n $jobs ]]; then
      log "cancelling jobs: ${jobs//$'\n'/ }"
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      wait_for "the jobs to end" no_active_jobs || true
    fi
  fi
  # Every daemon this script may have started, whatever the accounting mode, in reverse start order.
  stop slurmd "$STATE/run/slurmd.pid"
  stop slurmctld "$STATE/run/slurmctld.pid"
  stop slurmdbd "$STATE/run/slurmdbd.pid"
  stop mariadbd "$STATE/run/mariadbd.pid"
  stop munged "$STATE/run/munged.pid"
}

down() {
  [[ -d $STATE ]] || { log "nothing to stop ($STATE does not exist)"; return 0; }
  down_daemons
  unlink_default_conf
  log "down (state kept in $STATE; remove it for a fresh cluster)"
}

status() {
  local name file pid rc=0
  while read -r name file; do
    if pid=$(live_pid "$name" "$file"); then echo "$name: running (pid $pid)"; else echo "$name: stopped"; rc=1; fi
  done < <(daemons)
  if ((rc == 0)); then
    echo "node: $(node_state)"
    echo "configuration: $CONF"
    squeue --states=all -o "%.8i %.10T %.30k %j" 2>/dev/null | head -20 || true
  fi
  return $rc
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
