#!/usr/bin/env bash
# A throwaway single-node Ceph cluster for the tests (docs/ceph.md):
# one monitor and one memstore OSD on 127.0.0.1, cephx on, no mgr, no systemd.
# Everything lives in DIR: ceph.conf, keyrings, mon and OSD data, run dir, logs.
#
#   cluster.sh up DIR     create DIR, start the daemons, wait until the pool
#                         'cmkfs' serves, print one line; on failure print one
#                         line naming what failed, tear down, exit non-zero
#   cluster.sh down DIR   stop this cluster's daemons, empty DIR; idempotent
#   cluster.sh env DIR    print CEPH_CONF=... assignments for eval
#
# Environment:
#   CMKFS_CEPH_TIMEOUT     seconds each wait of 'up' may take (default 60)
#   CMKFS_CEPH_TERM_WAIT   seconds 'down' waits after SIGTERM before SIGKILL
#                          (default 3)
#   CMKFS_CEPH_OWNER=PID   'up' leaves a detached watchdog that runs 'down DIR'
#                          once PID has exited: for an owner killed without
#                          running its EXIT trap (SIGKILL, a ctest timeout)
#   CMKFS_CEPH_CONF_EXTRA  appended to ceph.conf as it is (section headers
#                          included), e.g. $'[osd]\ndebug osd = 20'
set -euo pipefail

readonly POOL=cmkfs
readonly CLIENT=cmkfs
readonly MARKER=.cmkfs-ceph-cluster
SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
TIMEOUT=${CMKFS_CEPH_TIMEOUT:-60}
TERM_WAIT=${CMKFS_CEPH_TERM_WAIT:-3}

usage() {
  echo "usage: cluster.sh up|down|env DIR" >&2
  exit 2
}

# The ports of every TCP socket on this machine (any state), one per line.
ports_in_use() {
  local f line port
  for f in /proc/net/tcp /proc/net/tcp6; do
    [ -r "$f" ] || continue
    while read -r _ line _; do
      port=${line##*:}
      [[ $port =~ ^[0-9A-Fa-f]{4}$ ]] && echo $((16#$port))
    done <"$f"
  done
}

# A port in 20000-32767 (below the kernel's default ephemeral range) that no
# socket uses. The caller holds the port lock until its mon has bound it.
pick_port() {
  local used p i
  used=" $(ports_in_use | sort -u | tr '\n' ' ') "
  for i in $(seq 1 200); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 12768))
    [[ $used == *" $p "* ]] || { echo "$p"; return 0; }
    : "$i"
  done
  return 1
}

# our_pid PID CONF KIND: true when PID is a live ceph-KIND process (KIND '*'
# for any) started with '--conf CONF'. Builtins only: it runs for every pid.
# Zombies have an empty cmdline, so they never count.
our_pid() {
  local pid=$1 conf=$2 kind=$3 args=() prog
  [ -r "/proc/$pid/cmdline" ] || return 1
  mapfile -d '' args 2>/dev/null <"/proc/$pid/cmdline" || return 1
  [ ${#args[@]} -gt 2 ] || return 1
  prog=${args[0]##*/}
  # shellcheck disable=SC2053
  [[ $prog == ceph-$kind ]] || return 1
  [[ " ${args[*]} " == *" --conf $conf "* ]]
}

# our_pids CONF KIND: their pids, pid files or not.
our_pids() {
  local conf=$1 kind=$2 d
  for d in /proc/[0-9]*; do
    our_pid "${d#/proc/}" "$conf" "$kind" && echo "${d#/proc/}"
  done
  return 0
}

# stop CONF KIND: SIGTERM, a bounded wait, SIGKILL, a bounded wait.
stop() {
  local conf=$1 kind=$2 pids deadline
  pids=$(our_pids "$conf" "$kind")
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  deadline=$((SECONDS + TERM_WAIT))
  while [ -n "$(our_pids "$conf" "$kind")" ] && [ $SECONDS -lt "$deadline" ]; do sleep 0.05; done
  pids=$(our_pids "$conf" "$kind")
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  deadline=$((SECONDS + 5))
  while [ -n "$(our_pids "$conf" "$kind")" ] && [ $SECONDS -lt "$deadline" ]; do sleep 0.05; done
  pids=$(our_pids "$conf" "$kind")
  [ -z "$pids" ] || { echo "cluster.sh: ceph processes survived SIGKILL: $(echo "$pids" | tr '\n' ' ')" >&2; return 1; }
}

# down DIR: the OSD first (it tells the mon it is going, and waits for the
# mon's answer), then the mon and anything else; then empty DIR.
cmd_down() {
  local dir=$1 conf
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd -P)
  conf=$dir/ceph.conf
  if [ ! -e "$dir/$MARKER" ]; then
    if [ -z "$(ls -A "$dir")" ]; then return 0; fi
    echo "cluster.sh: $dir is not a cluster made by cluster.sh (no $MARKER); not touching it" >&2
    return 1
  fi
  stop "$conf" osd
  stop "$conf" "*"
  find "$dir" -mindepth 1 -delete
}

# watch DIR PID: the watchdog of CMKFS_CEPH_OWNER. It ends by itself once
# the cluster is gone (DIR emptied), and tears it down once PID is gone.
cmd_watch() {
  local dir=$1 owner=$2
  while [ -e "$dir/$MARKER" ] && kill -0 "$owner" 2>/dev/null; do sleep 1; done
  if [ -e "$dir/$MARKER" ]; then cmd_down "$dir"; fi
}

cmd_env() {
  local dir=$1
  dir=$(cd "$dir" && pwd -P)
  [ -e "$dir/$MARKER" ] || { echo "cluster.sh: no cluster in $dir" >&2; return 1; }
  printf 'CEPH_CONF=%q\n' "$dir/ceph.conf"
  printf 'CEPH_KEYRING=%q\n' "$dir/client.$CLIENT.keyring"
  printf 'CEPH_ID=%q\n' "$CLIENT"
  printf 'CEPH_CLIENT_NAME=%q\n' "client.$CLIENT"
  printf 'CEPH_POOL=%q\n' "$POOL"
  printf 'CEPH_ADMIN_KEYRING=%q\n' "$dir/client.admin.keyring"
  printf 'export CEPH_CONF\n'
}

# --- up ---------------------------------------------------------------------

DIR=
SETUP_LOG=
UP_DONE=0

# fail MESSAGE [LOG...]: stop what 'up' started, keep DIR/log outside DIR,
# empty DIR, then print the one line (paths pointing at the kept logs) and
# the tail of the first LOG that names an error (of each non-empty LOG up
# to it); exit 1.
fail() {
  local msg=$1 log keep=
  shift
  trap - ERR INT TERM HUP
  if [ -n "$DIR" ] && [ -e "$DIR/$MARKER" ]; then
    stop "$DIR/ceph.conf" osd >/dev/null 2>&1 || true
    stop "$DIR/ceph.conf" "*" >/dev/null 2>&1 || true
    if [ $# -gt 0 ] && [ -d "$DIR/log" ] && keep=$(mktemp -d "${TMPDIR:-/tmp}/cmkfs-ceph-failed.XXXXXX"); then
      cp -r "$DIR/log" "$keep/" 2>/dev/null || true
      msg=${msg//"$DIR/log"/"$keep/log"}
    fi
    cmd_down "$DIR" >/dev/null 2>&1 || true
  fi
  echo "cluster.sh: $msg" >&2
  for log in "$@"; do
    [ -n "$keep" ] && log=${log/#"$DIR/log"/"$keep/log"}
    [ -s "$log" ] || continue
    # Ceph's logs end in pages of dump and rocksdb stats: show their last
    # error lines, then their last lines.
    if grep -vF rocksdb "$log" | grep -qE ' -1 |FAILED|error:'; then
      echo "--- last error lines of $log:" >&2
      grep -vF rocksdb "$log" | grep -E ' -1 |FAILED|error:' | tail -n 3 | cut -c1-240 | sed 's/^/    /' >&2
    fi
    echo "--- last lines of $log:" >&2
    tail -n 5 "$log" | cut -c1-240 | sed 's/^/    /' >&2
    # The next LOGs are fallbacks (stderr, the setup log): they repeat the
    # cause when this one had it.
    if grep -vF rocksdb "$log" | grep -qE ' -1 |FAILED|error:'; then break; fi
  done
  exit 1
}

on_up_exit() {
  local rc=$?
  if [ $UP_DONE -eq 0 ] && [ $rc -ne 0 ] && [ -e "$DIR/$MARKER" ]; then
    cmd_down "$DIR" >/dev/null 2>&1 || true
  fi
}

on_err() {
  fail "setup step failed (line $1, exit $2): $3" "$SETUP_LOG"
}

# run TIMEOUT CMD...: CMD under a timeout, output to the setup log.
run() {
  local t=$1
  shift
  echo "+ $*" >>"$SETUP_LOG"
  timeout -k 2 "$t" "$@" >>"$SETUP_LOG" 2>&1
}

# ceph CLI as client.admin, bounded.
admin() {
  timeout -k 2 15 ceph --conf "$DIR/ceph.conf" --name client.admin \
    --keyring "$DIR/client.admin.keyring" --connect-timeout 10 "$@" 2>>"$SETUP_LOG"
}

# died NAME PID WHEN LOG...: fail with how the child PID ended (wait works
# only in the shell that started it, so this must not run in a subshell).
died() {
  local name=$1 pid=$2 when=$3 rc=0 how
  shift 3
  wait "$pid" 2>/dev/null || rc=$?
  if [ $rc -gt 128 ]; then how="killed by signal $((rc - 128))"; else how="exit status $rc"; fi
  fail "$name exited$when ($how); see $1" "$@"
}

# alive PID: the process runs. A child that exited stays a zombie until it
# is reaped, and kill -0 succeeds on a zombie, so read its state instead.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ $stat != [ZX]* ]]
}

need_binaries() {
  local b missing=()
  for b in ceph ceph-mon ceph-osd ceph-authtool monmaptool rbd uuidgen timeout flock setsid; do
    command -v "$b" >/dev/null 2>&1 || missing+=("$b")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "cluster.sh: missing programs: ${missing[*]} (run packaging/install-deps.sh)" >&2
    exit 1
  fi
}

write_conf() {
  local port=$1 fsid=$2
  cat >"$DIR/ceph.conf" <<EOF
# A throwaway test cluster made by tests/ceph/cluster.sh: memstore, size 1.
# Never use these settings for data you want to keep.
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$port]
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
run dir = $DIR/run
crash dir = $DIR/crash
keyring = $DIR/\$name.keyring
mon cluster log file = $DIR/log/cluster.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0

[mon]
mon data = $DIR/mon/\$id
keyring = \$mon_data/keyring
log file = $DIR/log/\$name.log
pid file = $DIR/run/\$name.pid
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
paxos propose interval = 0.05
mon data avail warn = 1
mon data avail crit = 0

[osd]
osd data = $DIR/osd/\$id
keyring = \$osd_data/keyring
log file = $DIR/log/\$name.log
pid file = $DIR/run/\$name.pid
osd objectstore = memstore
memstore device bytes = 1073741824
osd crush initial weight = 1
public addr = 127.0.0.1
cluster addr = 127.0.0.1
osd op num shards = 2
osd op num threads per shard = 1
osd journal = $DIR/osd/\$id/journal
osd mon shutdown timeout = 1
EOF
  if [ -n "${CMKFS_CEPH_CONF_EXTRA:-}" ]; then
    printf '\n# CMKFS_CEPH_CONF_EXTRA\n%s\n' "$CMKFS_CEPH_CONF_EXTRA" >>"$DIR/ceph.conf"
  fi
}

cmd_up() {
  DIR=$1
  need_binaries
  if [ -e "$DIR/$MARKER" ]; then
    echo "cluster.sh: $DIR holds a cluster already ('cluster.sh down $DIR' stops and empties it)" >&2
    exit 1
  fi
  if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
    echo "cluster.sh: $DIR exists and is not empty; use an empty or new directory" >&2
    exit 1
  fi
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd -P)
  case $DIR in *[[:space:]]*) echo "cluster.sh: DIR must not contain spaces: $DIR" >&2; exit 1 ;; esac
  : >"$DIR/$MARKER"
  mkdir -p "$DIR/log" "$DIR/run" "$DIR/crash" "$DIR/mon/a" "$DIR/osd/0"
  SETUP_LOG=$DIR/log/setup.log
  : >"$SETUP_LOG"
  if [ -n "${CMKFS_CEPH_OWNER:-}" ]; then
    if ! [[ $CMKFS_CEPH_OWNER =~ ^[0-9]+$ ]] || ! kill -0 "$CMKFS_CEPH_OWNER" 2>/dev/null; then
      echo "cluster.sh: CMKFS_CEPH_OWNER=$CMKFS_CEPH_OWNER is not a running process" >&2
      cmd_down "$DIR"
      exit 1
    fi
    setsid -f bash "$SELF" watch "$DIR" "$CMKFS_CEPH_OWNER" </dev/null >/dev/null 2>&1
  fi
  set -o errtrace
  trap on_up_exit EXIT
  trap 'on_err "$LINENO" "$?" "$BASH_COMMAND"' ERR
  trap 'fail "interrupted by a signal; stopped what it had started"' INT TERM HUP

  local fsid osd_uuid port deadline mon_pid osd_pid mon_log osd_log
  fsid=$(uuidgen)
  osd_uuid=$(uuidgen)
  mon_log=$DIR/log/mon.a.log
  osd_log=$DIR/log/osd.0.log

  # Keys: mon., client.admin, client.cmkfs and osd.0, all imported into the
  # mon's initial keyring so that 'ceph-mon --mkfs' registers every one.
  run 10 ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *'
  run 10 ceph-authtool --create-keyring "$DIR/client.admin.keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *'
  run 10 ceph-authtool --create-keyring "$DIR/client.$CLIENT.keyring" --gen-key -n "client.$CLIENT" \
    --cap mon 'profile rbd' --cap osd "profile rbd pool=$POOL"
  run 10 ceph-authtool --create-keyring "$DIR/osd/0/keyring" --gen-key -n osd.0 \
    --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *'
  local k
  for k in "$DIR/client.admin.keyring" "$DIR/client.$CLIENT.keyring" "$DIR/osd/0/keyring"; do
    run 10 ceph-authtool "$DIR/mon.keyring" --import-keyring "$k"
  done
  chmod 600 "$DIR"/*.keyring "$DIR/osd/0/keyring"

  # The port: chosen and bound under a lock, so two 'up's at once never pick
  # the same one, and never one a leftover cluster (or anything else) holds.
  exec 9>"${TMPDIR:-/tmp}/cmkfs-ceph-port.lock"
  timeout 30 flock 9 || fail "could not take the port lock ${TMPDIR:-/tmp}/cmkfs-ceph-port.lock within 30 s"
  port=$(pick_port) || fail "found no free TCP port in 20000-32767"
  write_conf "$port" "$fsid"

  run 10 monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$DIR/monmap"
  if ! run 30 ceph-mon --conf "$DIR/ceph.conf" --mkfs -i a --monmap "$DIR/monmap" \
      --keyring "$DIR/mon.keyring"; then
    fail "ceph-mon --mkfs failed; see $mon_log" "$mon_log" "$SETUP_LOG"
  fi

  ceph-mon --conf "$DIR/ceph.conf" -i a -f </dev/null >>"$DIR/log/mon.a.stderr" 2>&1 9>&- &
  mon_pid=$!
  echo "$mon_pid" >"$DIR/mon.a.pid"

  # Wait until the mon listens, then let go of the port lock.
  deadline=$((SECONDS + TIMEOUT))
  until [[ $'\n'$(ports_in_use)$'\n' == *$'\n'"$port"$'\n'* ]]; do
    alive "$mon_pid" || died ceph-mon "$mon_pid" " at start" "$mon_log" "$DIR/log/mon.a.stderr"
    [ $SECONDS -lt "$deadline" ] || fail "ceph-mon did not listen on 127.0.0.1:$port within $TIMEOUT s; see $mon_log" "$mon_log"
    sleep 0.05
  done
  exec 9>&-

  until admin -s >/dev/null; do
    alive "$mon_pid" || died ceph-mon "$mon_pid" "" "$mon_log" "$DIR/log/mon.a.stderr"
    [ $SECONDS -lt "$deadline" ] || fail "ceph-mon did not answer within $TIMEOUT s; see $mon_log" "$mon_log"
    sleep 0.1
  done

  # The OSD: an id in the osdmap, a memstore made, the daemon started.
  local id
  id=$(admin osd new "$osd_uuid" 0) || fail "'ceph osd new' failed; see $SETUP_LOG" "$SETUP_LOG"
  [ "$id" = 0 ] || fail "'ceph osd new' gave id '$id', not 0"
  if ! run 30 ceph-osd --conf "$DIR/ceph.conf" -i 0 --mkfs --osd-uuid "$osd_uuid" --no-mon-config; then
    fail "ceph-osd --mkfs failed; see $osd_log" "$osd_log" "$SETUP_LOG"
  fi
  ceph-osd --conf "$DIR/ceph.conf" -i 0 -f </dev/null >>"$DIR/log/osd.0.stderr" 2>&1 9>&- &
  osd_pid=$!
  echo "$osd_pid" >"$DIR/osd.0.pid"

  deadline=$((SECONDS + TIMEOUT))
  local stat
  while :; do
    alive "$osd_pid" || died ceph-osd "$osd_pid" " at start" "$osd_log" "$DIR/log/osd.0.stderr"
    alive "$mon_pid" || died ceph-mon "$mon_pid" "" "$mon_log" "$DIR/log/mon.a.stderr"
    stat=$(admin osd dump --format json 2>/dev/null | tr -d ' \n') || stat=
    [[ $stat == *'"osd":0,'*'"up":1,"in":1'* ]] && break
    [ $SECONDS -lt "$deadline" ] || fail "osd.0 was not up and in within $TIMEOUT s; see $osd_log" "$osd_log"
    sleep 0.2
  done

  # The pool: size 1 / min_size 1, initialised for RBD.
  admin osd pool create "$POOL" 8 8 replicated >>"$SETUP_LOG" ||
    fail "could not create pool $POOL; see $SETUP_LOG" "$SETUP_LOG"
  admin osd pool set "$POOL" size 1 --yes-i-really-mean-it >>"$SETUP_LOG" 2>&1 ||
    fail "could not set size 1 on pool $POOL; see $SETUP_LOG" "$SETUP_LOG"
  admin osd pool set "$POOL" min_size 1 >>"$SETUP_LOG" 2>&1 ||
    fail "could not set min_size 1 on pool $POOL; see $SETUP_LOG" "$SETUP_LOG"
  local left=$((deadline - SECONDS))
  [ $left -gt 5 ] || left=5
  if ! run "$left" rbd --conf "$DIR/ceph.conf" --id admin pool init "$POOL"; then
    fail "'rbd pool init $POOL' failed or did not finish within $left s (are its PGs active?); see $osd_log" "$osd_log"
  fi

  UP_DONE=1
  trap - ERR INT TERM HUP EXIT
  echo "cluster up: conf=$DIR/ceph.conf keyring=$DIR/client.$CLIENT.keyring pool=$POOL"
}

if [ $# -eq 3 ] && [ "$1" = watch ]; then
  cmd_watch "$2" "$3"
  exit 0
fi
[ $# -eq 2 ] || usage
case $1 in
  up) cmd_up "$2" ;;
  down) cmd_down "$2" ;;
  env) cmd_env "$2" ;;
  *) usage ;;
esac
