#!/usr/bin/env bash
# Side-by-side benchmark of cmkfs against its peers (issue 9); see
# docs/BENCHMARKS.md for what it measures and how to read the table.
#
#   tests/bench/run.sh [--quick] [--keep] [--record] [--note TEXT] [--enforce]
#                      [--bin-dir DIR] [--systems LIST] [--work-dir DIR]
#                      [--fuse-threads N]
#
# --quick     256 MiB files, 2 s jobs: a smoke run (ctest bench.quick).
# --keep      keep the work directory (images, fio JSON, logs) afterwards.
# --record    keep the raw results (fio JSON gzipped, qemu-io output, CPU and
#             RSS samples, machine notes) in docs/bench/<UTC start time>/ and
#             append the report made from that copy to docs/BENCHMARKS.md.
#             Only a run where every step ran is recorded.
# --note TEXT a note printed in the report (e.g. why the machine was loaded);
#             may be repeated.
# --enforce   also fail (exit 3) when a target is missed or not checked: the
#             release check, on an idle machine. Without it a missed target is
#             printed as FAIL and does not change the exit status.
# --bin-dir   build tree holding fs/daemon/cmkfs and cli/cmkctl (default:
#             $CMKFS_BIN_DIR, else build/ next to tests/).
# --systems   comma list out of raw,bindfs,gocryptfs,cmkfs,luks (default: all).
# --fuse-threads N  [engine] fuse_threads of the cmkfs daemons (default 0:
#             the daemon's default).
# --work-dir  parent directory of the work directory (default: /var/tmp when
#             $TMPDIR or /tmp is a tmpfs, else $TMPDIR or /tmp).
#
# Every system that is run must produce every figure: a missing one fails the
# run with a line "missing figure: SYSTEM: JOB: REASON".
#
# Exit status: 0 when every step ran and every figure is there (whatever the
# targets say without --enforce); 1 when a step failed (a system did not set
# up, a tool failed, a figure is missing); 2 for a usage error; 3 with
# --enforce when every figure is there but a target is not met.
set -uo pipefail

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$bench_dir/../.." && pwd)
PY=/usr/bin/python3

quick=0
keep=0
record=0
enforce=0
notes_given=()
shown_args=()
bin_dir=${CMKFS_BIN_DIR:-$repo_dir/build}
systems="raw,bindfs,gocryptfs,cmkfs,luks"
work_parent=""
fuse_threads=0

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --note) notes_given+=("${2:?--note needs a text}"); shown_args+=(--note TEXT); shift; shift; continue ;;
    --note=*) notes_given+=("${1#*=}"); shown_args+=(--note TEXT); shift; continue ;;
  esac
  shown_args+=("$1")
  case "$1" in
    --enforce) enforce=1 ;;
    --quick) quick=1 ;;
    --keep) keep=1 ;;
    --record) record=1 ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shown_args+=("$2"); shift ;;
    --bin-dir=*) bin_dir=${1#*=} ;;
    --systems) systems=${2:?--systems needs a comma list}; shown_args+=("$2"); shift ;;
    --systems=*) systems=${1#*=} ;;
    --work-dir) work_parent=${2:?--work-dir needs a directory}; shown_args+=("$2"); shift ;;
    --work-dir=*) work_parent=${1#*=} ;;
    --fuse-threads) fuse_threads=${2:?--fuse-threads needs a number}; shown_args+=("$2"); shift ;;
    --fuse-threads=*) fuse_threads=${1#*=} ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1'; accepted: --quick --keep --record --note TEXT --enforce --bin-dir DIR --systems LIST --work-dir DIR --fuse-threads N" >&2; exit 2 ;;
  esac
  shift
done
for s in ${systems//,/ }; do
  case "$s" in raw | bindfs | gocryptfs | cmkfs | luks) ;;
    *) echo "run.sh: unknown system '$s' in --systems; accepted: raw,bindfs,gocryptfs,cmkfs,luks" >&2; exit 2 ;;
  esac
done
want() { [[ ",$systems," == *",$1,"* ]]; }
if ! [[ "$fuse_threads" =~ ^[0-9]+$ ]] || [ "$fuse_threads" -gt 1024 ]; then
  echo "run.sh: --fuse-threads '$fuse_threads' is not a number of threads; accepted: 0..1024" >&2
  exit 2
fi

if [ "$quick" = 1 ]; then
  file_mib=256 runtime=2 ramp=1 qemu_mib=250 many_mib=32 cache_write_mib=512
else
  file_mib=1024 runtime=5 ramp=1 qemu_mib=1000 many_mib=128 cache_write_mib=4096
fi
# Many disks (issue 23): this many disks (files) of many_mib each, one fio
# job on each at once; the first four also carry the fsync-with-neighbours
# job. cache_write_mib: the write that measures the host's page-cache growth.
many_n=8
cache_mib=32 # [engine] cache of the cmkfs config written below
clk_tck=$(getconf CLK_TCK)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
failures=()
fail_step() {
  log "FAILED: $*"
  failures+=("$*")
  # report.py names the failed step next to the figures it cost.
  [ -n "${results:-}" ] && printf '%s\n' "$*" >>"$results/failures.txt"
}

# --- tools -----------------------------------------------------------------
need_tools() {
  local missing=()
  for t in fio bindfs gocryptfs cryptsetup qemu-io qemu-img fusermount3 mountpoint "$PY"; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "missing tools: ${missing[*]}; running packaging/install-deps.sh"
    "$repo_dir/packaging/install-deps.sh" || return 1
  fi
}
if ! need_tools; then
  echo "run.sh: benchmark tools are missing and packaging/install-deps.sh could not install them" >&2
  exit 1
fi
CMKFS=$bin_dir/fs/daemon/cmkfs
CMKCTL=$bin_dir/cli/cmkctl

# --- work directory on the backing filesystem --------------------------------
if [ -z "$work_parent" ]; then
  work_parent=${TMPDIR:-/tmp}
  [ "$(stat -f -c %T "$work_parent")" = tmpfs ] && work_parent=/var/tmp
fi
if [ "$(stat -f -c %T "$work_parent")" = tmpfs ]; then
  echo "run.sh: $work_parent is a tmpfs (no O_DIRECT, not a disk); pass --work-dir on the backing filesystem" >&2
  exit 2
fi
work=$(mktemp -d "$work_parent/cmkfs-bench.XXXXXX") || exit 1
results=$work/results
mkdir -p "$results"
backing_fs=$(stat -f -c %T "$work")
backing_dev=$(df --output=source "$work" | tail -1)
log "work directory $work ($backing_fs on $backing_dev)"

mounts=()   # FUSE mountpoints to unmount on exit
pids=()     # daemons we started (foreground FUSE servers, cmkfs)
luks_mapped=()

cleanup() {
  local m p
  for m in "${mounts[@]}"; do
    if mountpoint -q "$m" 2>/dev/null; then
      fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    fi
  done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null
  done
  for m in "${luks_mapped[@]}"; do cryptsetup close "$m" 2>/dev/null; done
  if [ "$keep" = 1 ]; then
    log "kept $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_mounted() { # MOUNTPOINT PID-or-empty
  for _ in $(seq 100); do
    mountpoint -q "$1" && return 0
    if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

unmount() { # MOUNTPOINT PID
  fusermount3 -u "$1" || return 1
  for _ in $(seq 100); do kill -0 "$2" 2>/dev/null || return 0; sleep 0.1; done
  log "daemon $2 still running 10 s after unmounting $1"
  return 1
}

# --- measurements ------------------------------------------------------------
cpu_ticks() { # PID -> utime+stime in clock ticks (all threads)
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null
}
now() { date +%s.%N; }

# Samples the daemon's CPU over fio's measured window (after the ramp, with a
# margin at both ends) so the CPU matches fio's bandwidth figure.
cpu_window() { # PID OUTFILE
  local pid=$1 out=$2 margin=0.25 t0 c0 t1 c1
  sleep "$($PY -c "print($ramp + $margin)")"
  t0=$(now) c0=$(cpu_ticks "$pid")
  sleep "$($PY -c "print($runtime - 2 * $margin)")"
  t1=$(now) c1=$(cpu_ticks "$pid")
  [ -n "$c0" ] && [ -n "$c1" ] && echo "$t0 $c0 $t1 $c1 $clk_tck" >"$out"
}

vm_hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

fio_common=(--ioengine=libaio --direct=1 --numjobs=1 --thread=0 --fallocate=none
  --randrepeat=0 --norandommap=1 --group_reporting=1 --output-format=json)

# Writes the whole file once (creating it when allowed) so reads read data.
layout() { # FILE SIZE_MIB ALLOW_CREATE
  fio --name=layout --filename="$1" --size="${2}M" --rw=write --bs=1M --iodepth=4 \
    --allow_file_create="$3" "${fio_common[@]}" >"$results/layout-$(basename "$1").json" 2>&1
}

jobs_all="seqwrite seqread randread randwrite fsync"
fio_job() { # SYSTEM JOB FILE SIZE_MIB [DAEMON_PID] [TAG]
  local sys=$1 job=$2 file=$3 size=$4 pid=${5:-} tag=${6:-$1} args
  case "$job" in
    seqwrite) args=(--rw=write --bs=1M --iodepth=4) ;;
    seqread) args=(--rw=read --bs=1M --iodepth=4) ;;
    randread) args=(--rw=randread --bs=4k --iodepth=32) ;;
    randwrite) args=(--rw=randwrite --bs=4k --iodepth=32) ;;
    # A database's commit: each 4 KiB write waits for its fdatasync.
    fsync) args=(--rw=write --bs=4k --iodepth=1 --fdatasync=1) ;;
  esac
  local out=$results/fio-$tag-$job.json sampler=""
  rm -f "$results/cpu-$tag-$job.txt"
  if [ -n "$pid" ]; then
    cpu_window "$pid" "$results/cpu-$tag-$job.txt" &
    sampler=$!
  fi
  log "$tag: fio $job"
  if ! fio --name="$job" --filename="$file" --size="${size}M" --allow_file_create=0 \
    --time_based=1 --runtime="$runtime" --ramp_time="$ramp" "${args[@]}" \
    "${fio_common[@]}" --output="$out" 2>"$results/fio-$tag-$job.err"; then
    [ -n "$sampler" ] && wait "$sampler"
    fail_step "$tag: fio $job on $file: $(tail -1 "$results/fio-$tag-$job.err")"
    return 1
  fi
  [ -n "$sampler" ] && wait "$sampler"
  return 0
}

fio_all() { # SYSTEM FILE SIZE_MIB [PID] [TAG]
  local j
  for j in $jobs_all; do fio_job "$1" "$j" "$2" "$3" "${4:-}" "${5:-}" || return 1; done
}

# qemu-io prints "1000 MiB, 1 ops; 00.61 sec (1.598 GiB/sec and 1.6 ops/sec)".
qemu_io_pass() { # SYSTEM OP(write|read) qemu-io-args...
  local sys=$1 op=$2 out
  shift 2
  out=$results/qemu-$sys-$op.txt
  log "$sys: qemu-io $op ${qemu_mib}M"
  if ! qemu-io "$@" -c "$op -P 0xab 0 ${qemu_mib}M" >"$out" 2>&1 ||
    grep -qiE 'error|fail|mismatch' "$out"; then
    fail_step "$sys: qemu-io $op: $(grep -v '^$' "$out" | tail -1)"
    return 1
  fi
}

qemu_io_raw() { # SYSTEM FILE
  qemu_io_pass "$1" write -f raw -t none "$2" && qemu_io_pass "$1" read -f raw -t none "$2"
}

# The fio options of the jobs that run several files at once: one job per
# file, reported one by one (group_reporting off).
fio_multi=(--ioengine=libaio --direct=1 --thread=0 --fallocate=none --randrepeat=0
  --norandommap=1 --allow_file_create=0 --time_based=1 --output-format=json)

# Many disks: a 4 KiB random 70/30 read/write mix at QD8 on each of the
# files at once; fio-TAG-many.json holds one job per file.
fio_many() { # TAG PID-or-empty FILE...
  local tag=$1 pid=$2 out sampler="" i=0 f
  shift 2
  local jobs=()
  for f in "$@"; do jobs+=(--name="disk$i" --filename="$f"); i=$((i + 1)); done
  out=$results/fio-$tag-many.json
  rm -f "$results/cpu-$tag-many.txt"
  if [ -n "$pid" ]; then
    cpu_window "$pid" "$results/cpu-$tag-many.txt" &
    sampler=$!
  fi
  log "$tag: fio on $# files at once (4K randrw 70/30 QD8 each)"
  if ! fio --size="${many_mib}M" --runtime="$runtime" --ramp_time="$ramp" --rw=randrw \
    --rwmixread=70 --bs=4k --iodepth=8 "${fio_multi[@]}" "${jobs[@]}" \
    --output="$out" 2>"$results/fio-$tag-many.err"; then
    [ -n "$sampler" ] && wait "$sampler"
    fail_step "$tag: fio on $# files at once: $(tail -1 "$results/fio-$tag-many.err")"
    return 1
  fi
  [ -n "$sampler" ] && wait "$sampler"
  return 0
}

# fsync beside busy neighbours: the fsync job on the first file while 1 MiB
# QD4 writes stream to the others; fio-TAG-fsyncbusy.json's first job is the
# fsync one. Against fio-TAG-fsync.json (the same job alone) it shows whether
# one disk's fsync waits for the others' data.
fio_fsync_busy() { # TAG FSYNC_FILE STREAM_FILE...
  local tag=$1 first=$2 f i=0
  shift 2
  local jobs=(--name=fsync --filename="$first" --rw=write --bs=4k --iodepth=1 --fdatasync=1)
  for f in "$@"; do
    jobs+=(--name="stream$i" --filename="$f" --rw=write --bs=1M --iodepth=4)
    i=$((i + 1))
  done
  log "$tag: fio fsync while $# neighbours stream"
  if ! fio --size="${many_mib}M" --runtime="$runtime" --ramp_time="$ramp" "${fio_multi[@]}" \
    "${jobs[@]}" --output="$results/fio-$tag-fsyncbusy.json" 2>"$results/fio-$tag-fsyncbusy.err"; then
    fail_step "$tag: fio fsync beside streams: $(tail -1 "$results/fio-$tag-fsyncbusy.err")"
    return 1
  fi
}

# Lays out many_n files (or disks) of many_mib, runs fio_many on all and,
# with BUSY=1, fio_fsync_busy on the first four.
many_and_busy() { # TAG PID-or-empty ALLOW_CREATE BUSY FILE...
  local tag=$1 pid=$2 create=$3 busy=$4 f
  shift 4
  for f in "$@"; do
    layout "$f" "$many_mib" "$create" || { fail_step "$tag: layout of $f failed"; return 1; }
  done
  fio_many "$tag" "$pid" "$@" || return 1
  [ "$busy" = 1 ] || return 0
  fio_fsync_busy "$tag" "$1" "$2" "$3" "$4"
}

# The host's page-cache growth (Cached in /proc/meminfo) across an O_DIRECT
# write of cache_write_mib to FILE, after dropping the clean caches:
# cached-TAG.txt holds "KiB-before KiB-after MiB-written".
cached_kib() { awk '/^Cached:/ { print $2 }' /proc/meminfo; }
cache_growth() { # TAG FILE ALLOW_CREATE
  local tag=$1 before after
  sync
  if ! echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then
    fail_step "$tag: cannot drop the page cache to measure its growth (/proc/sys/vm/drop_caches needs root)"
    return 1
  fi
  before=$(cached_kib)
  log "$tag: page cache before a ${cache_write_mib}M O_DIRECT write: $((before / 1024)) MiB"
  if ! fio --name=cachewrite --filename="$2" --size="${cache_write_mib}M" --rw=write --bs=1M \
    --iodepth=4 --allow_file_create="$3" "${fio_common[@]}" \
    --output="$results/cachewrite-$tag.json" 2>"$results/cachewrite-$tag.err"; then
    fail_step "$tag: the ${cache_write_mib}M write failed: $(tail -1 "$results/cachewrite-$tag.err")"
    return 1
  fi
  after=$(cached_kib)
  echo "$before $after $cache_write_mib" >"$results/cached-$tag.txt"
}

# --- systems -----------------------------------------------------------------
run_raw() {
  local f=$work/raw.img
  log "raw: laying out $f"
  layout "$f" "$file_mib" 1 || { fail_step "raw: layout failed"; return 1; }
  fio_all raw "$f" "$file_mib" || return 1
  qemu_io_raw raw "$f"
  rm -f "$f"
  local many=() i
  for i in $(seq 0 $((many_n - 1))); do many+=("$work/raw-many$i.img"); done
  many_and_busy raw "" 1 1 "${many[@]}"
  rm -f "${many[@]}"
  cache_growth raw "$work/raw-cache.img" 1
  rm -f "$work/raw-cache.img"
}

run_bindfs() {
  local src=$work/bindfs-src mnt=$work/bindfs-mnt pid
  mkdir -p "$src" "$mnt"
  bindfs -f "$src" "$mnt" 2>"$results/bindfs.log" &
  pid=$!
  pids+=("$pid")
  mounts+=("$mnt")
  wait_mounted "$mnt" "$pid" || { fail_step "bindfs: did not mount ($(tail -1 "$results/bindfs.log"))"; return 1; }
  log "bindfs: laying out $mnt/bench.img"
  layout "$mnt/bench.img" "$file_mib" 1 || { fail_step "bindfs: layout failed"; return 1; }
  fio_all bindfs "$mnt/bench.img" "$file_mib" "$pid"
  unmount "$mnt" "$pid" || fail_step "bindfs: unmount failed"
  rm -rf "$src"
}

run_gocryptfs() {
  local cipher=$work/gocryptfs-cipher mnt=$work/gocryptfs-mnt pass=$work/gocryptfs.pass pid
  mkdir -p "$cipher" "$mnt"
  printf 'benchmark-passphrase\n' >"$pass"
  if ! gocryptfs -init -q -scryptn 10 -passfile "$pass" "$cipher" >"$results/gocryptfs-init.log" 2>&1; then
    fail_step "gocryptfs: init failed ($(tail -1 "$results/gocryptfs-init.log"))"
    return 1
  fi
  gocryptfs -fg -q -passfile "$pass" "$cipher" "$mnt" >"$results/gocryptfs.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  mounts+=("$mnt")
  wait_mounted "$mnt" "$pid" || { fail_step "gocryptfs: did not mount ($(tail -1 "$results/gocryptfs.log"))"; return 1; }
  log "gocryptfs: laying out $mnt/bench.img"
  layout "$mnt/bench.img" "$file_mib" 1 || { fail_step "gocryptfs: layout failed"; return 1; }
  fio_all gocryptfs "$mnt/bench.img" "$file_mib" "$pid"
  echo "$(vm_hwm_kib "$pid")" >"$results/rss-gocryptfs.txt"
  rm -f "$mnt/bench.img"
  local many=() i
  for i in $(seq 0 $((many_n - 1))); do many+=("$mnt/many$i.img"); done
  many_and_busy gocryptfs "$pid" 1 0 "${many[@]}"
  unmount "$mnt" "$pid" || fail_step "gocryptfs: unmount failed"
  rm -rf "$cipher"
}

cmkfs_config() { # STATE_DIR CONFIG_FILE [BACKING_IO]
  cat >"$2" <<TOML
state_dir = "$1"
log_level = "warn"
[engine]
cache = "${cache_mib}M"
backing_io = "${3:-buffered}"
fuse_threads = $fuse_threads
TOML
}

# Runs cmkctl; its stdout goes to $ctl_out. Records a failed step on error.
ctl_out=""
ctl() { # CONFIG args...
  local cfg=$1 err=$results/cmkctl.err
  shift
  if ! ctl_out=$("$CMKCTL" --config "$cfg" "$@" 2>"$err"); then
    fail_step "cmkfs: cmkctl $* failed: $(tail -1 "$err")"
    return 1
  fi
}

# Starts the daemon (it daemonizes) and sets $cmkfs_pid (from the pid file).
cmkfs_pid=""
start_cmkfs() { # CONFIG STATE MNT
  if ! "$CMKFS" --config "$1" "$3" >"$results/cmkfs-start.log" 2>&1; then
    fail_step "cmkfs: daemon did not start: $(tail -1 "$results/cmkfs-start.log")"
    return 1
  fi
  mounts+=("$3")
  wait_mounted "$3" || { fail_step "cmkfs: $3 is not mounted after start"; return 1; }
  local pid=""
  [ -r "$2/cmkfs.pid" ] && pid=$(tr -dc 0-9 <"$2/cmkfs.pid")
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    # No pid file: the cmkfs process whose command line names MNT.
    local p
    pid=""
    for p in /proc/[0-9]*; do
      if [ "$(cat "$p/comm" 2>/dev/null)" = cmkfs ] &&
        tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF "$3"; then
        pid=${p#/proc/}
        break
      fi
    done
  fi
  [ -n "$pid" ] || { fail_step "cmkfs: cannot find the daemon's pid"; return 1; }
  pids+=("$pid")
  cmkfs_pid=$pid
}

run_cmkfs() {
  local state=$work/cmkfs-state mnt=$work/cmkfs-mnt cfg=$work/cmkfs.toml pid key_id des_id d
  if [ ! -x "$CMKFS" ] || [ ! -x "$CMKCTL" ]; then
    fail_step "cmkfs: $CMKFS or $CMKCTL is not built (pass --bin-dir)"
    return 1
  fi
  mkdir -p "$state" "$mnt"
  cmkfs_config "$state" "$cfg"
  log "cmkfs: vault, key, disk encryption set, disk (${file_mib}M)"
  ctl "$cfg" vault create benchvault --purge-protection || return 1
  ctl "$cfg" key create benchvault benchkey || return 1
  key_id=$ctl_out
  ctl "$cfg" des create benchdes --key-id "$key_id" || return 1
  des_id=$ctl_out
  ctl "$cfg" vault set-policy benchvault --object-id "$des_id" \
    --key-permissions get wrapKey unwrapKey || return 1
  ctl "$cfg" disk create bench --size "${file_mib}M" --des benchdes || return 1
  local i many=()
  for i in $(seq 0 $((many_n - 1))); do
    ctl "$cfg" disk create "many$i" --size "${many_mib}M" --des benchdes || return 1
    many+=("$mnt/disks/many$i")
  done
  ctl "$cfg" disk create cachew --size "${cache_write_mib}M" --des benchdes || return 1

  start_cmkfs "$cfg" "$state" "$mnt" || return 1
  pid=$cmkfs_pid
  echo "$pid" >"$results/cmkfs.pid"
  local disk=$mnt/disks/bench
  [ -f "$disk" ] || { fail_step "cmkfs: $disk does not exist on the mount"; return 1; }
  log "cmkfs: daemon pid $pid; laying out $disk"
  layout "$disk" "$file_mib" 0 || { fail_step "cmkfs: layout failed ($(tail -1 "$results/layout-bench.json"))"; return 1; }
  fio_all cmkfs "$disk" "$file_mib" "$pid"
  vm_hwm_kib "$pid" >"$results/rss-cmkfs-fio.txt"
  local c0 c1 t0 t1
  for op in write read; do
    t0=$(now) c0=$(cpu_ticks "$pid")
    qemu_io_pass cmkfs "$op" -f raw -t none "$disk"
    t1=$(now) c1=$(cpu_ticks "$pid")
    echo "$t0 $c0 $t1 $c1 $clk_tck" >"$results/cpu-cmkfs-qemu-$op.txt"
  done
  vm_hwm_kib "$pid" >"$results/rss-cmkfs-all.txt"
  grep -E '^(VmHWM|VmRSS|Threads)' "/proc/$pid/status" >"$results/cmkfs-status.txt"
  many_and_busy cmkfs "$pid" 0 1 "${many[@]}"
  cache_growth cmkfs "$mnt/disks/cachew" 0
  unmount "$mnt" "$pid" || { fail_step "cmkfs: unmount failed"; return 1; }

  # The same disks through a daemon with backing_io = "direct".
  local cfg_direct=$work/cmkfs-direct.toml
  cmkfs_config "$state" "$cfg_direct" direct
  log "cmkfs: daemon with backing_io = direct"
  start_cmkfs "$cfg_direct" "$state" "$mnt" || return 1
  pid=$cmkfs_pid
  layout "$disk" "$file_mib" 0 || { fail_step "cmkfsd: layout failed"; return 1; }
  fio_all cmkfsd "$disk" "$file_mib" "$pid"
  many_and_busy cmkfsd "$pid" 0 1 "${many[@]}"
  cache_growth cmkfsd "$mnt/disks/cachew" 0
  unmount "$mnt" "$pid" || { fail_step "cmkfsd: unmount failed"; return 1; }

  # Flat memory: a fresh daemon with a disk 16 times bigger, same jobs on its
  # first ${file_mib} MiB.
  local big_mib=$((file_mib * 16))
  log "cmkfs: second daemon with a ${big_mib}M disk"
  for d in bench cachew "${many[@]##*/}"; do
    "$CMKCTL" --config "$cfg" disk delete "$d" >/dev/null 2>&1 || true
  done
  ctl "$cfg" disk create bench16 --size "${big_mib}M" --des benchdes || return 1
  start_cmkfs "$cfg" "$state" "$mnt" || return 1
  pid=$cmkfs_pid
  disk=$mnt/disks/bench16
  layout "$disk" "$file_mib" 0 || { fail_step "cmkfs: layout of bench16 failed"; return 1; }
  fio_all cmkfs "$disk" "$file_mib" "$pid" cmkfs16
  vm_hwm_kib "$pid" >"$results/rss-cmkfs16-fio.txt"
  unmount "$mnt" "$pid" || fail_step "cmkfs: unmount of the second daemon failed"
}

run_luks() {
  local f=$work/luks.img key=$work/luks.key
  printf 'benchmark-passphrase' >"$key"
  log "luks: laying out $f and formatting it (LUKS1, 1000 PBKDF2 iterations)"
  # Room for the payload and the LUKS1 header (2 MiB with a 512-bit key).
  layout "$f" $((qemu_mib + 16)) 1 || { fail_step "luks: layout failed"; return 1; }
  if ! cryptsetup luksFormat --type luks1 --pbkdf-force-iterations 1000 --batch-mode \
    --key-file "$key" "$f" >"$results/luks-format.log" 2>&1; then
    fail_step "luks: luksFormat failed: $(tail -1 "$results/luks-format.log")"
    return 1
  fi
  cryptsetup luksDump "$f" >"$results/luks-dump.txt" 2>&1
  local opts=(--object "secret,id=sec0,file=$key"
    --image-opts "driver=luks,key-secret=sec0,file.driver=file,file.filename=$f,file.cache.direct=on,cache.no-flush=off")
  qemu_io_pass luks write -t none "${opts[@]}" && qemu_io_pass luks read -t none "${opts[@]}"
  rm -f "$f"
}

# --- run -----------------------------------------------------------------------
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for s in raw bindfs gocryptfs cmkfs luks; do
  want "$s" || continue
  log "=== $s"
  "run_$s" || true
done

notes=$results/machine.txt
{
  echo "date=$started"
  echo "host=$(hostname)"
  echo "nproc=$(nproc)"
  echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "aes=$(grep -qw vaes /proc/cpuinfo && echo 'AES-NI+VAES' || (grep -qw aes /proc/cpuinfo && echo AES-NI || echo none))"
  echo "mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "kernel=$(uname -r)"
  echo "load=$load_before at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  echo "fs=$backing_fs on $backing_dev"
  echo "fio=$(fio --version)"
  echo "qemu=$(qemu-io --version | head -1)"
  echo "gocryptfs=$(gocryptfs -version 2>/dev/null | head -1)"
  echo "bindfs=$(bindfs --version 2>/dev/null | head -1)"
  echo "cmkfs=$("$CMKFS" --version 2>/dev/null | head -1)"
  echo "mode=$([ "$quick" = 1 ] && echo quick || echo full)"
  echo "file_mib=$file_mib"
  echo "runtime=$runtime"
  echo "ramp=$ramp"
  echo "qemu_mib=$qemu_mib"
  echo "bench=2"
  echo "fuse_threads=$fuse_threads"
  echo "many_n=$many_n"
  echo "many_mib=$many_mib"
  echo "cache_write_mib=$cache_write_mib"
  echo "cache_mib=$cache_mib"
  echo "systems=$systems"
  echo "args=${shown_args[*]}"
  for n in "${notes_given[@]}"; do echo "note=${n//$'\n'/ }"; done
} >"$notes"

# --record: the report is made from the kept copy, so the entry in
# docs/BENCHMARKS.md is exactly what report.py prints for docs/bench/<run>/.
report_dir=$results record_dir="" record_rel=""
max_record_bytes=$((1024 * 1024))
if [ "$record" = 1 ]; then
  if [ ${#failures[@]} -gt 0 ]; then
    log "not recording: a step failed (listed below)"
  else
    record_rel=bench/$(date -u -d "$started" +%Y-%m-%dT%H%M%SZ)
    record_dir=$repo_dir/docs/$record_rel
    mkdir -p "$record_dir"
    echo "recorded=$record_rel" >>"$notes"
    for f in "$results"/fio-*.json; do
      [ -f "$f" ] || continue
      gzip -9n -c "$f" >"$record_dir/$(basename "$f").gz"
    done
    cp "$results"/machine.txt "$results"/cpu-*.txt "$results"/qemu-*.txt "$results"/rss-*.txt \
      "$results"/cached-*.txt "$record_dir"/ 2>/dev/null
    [ -f "$results/cmkfs-status.txt" ] && cp "$results/cmkfs-status.txt" "$record_dir"/
    record_bytes=$(du -sb "$record_dir" | cut -f1)
    if [ "$record_bytes" -gt "$max_record_bytes" ]; then
      fail_step "record: $record_dir holds $record_bytes bytes (limit $max_record_bytes); not recorded"
      rm -rf "$record_dir"
      record_dir=""
    else
      report_dir=$record_dir
      log "kept the raw results in $record_dir ($record_bytes bytes)"
    fi
  fi
fi

report_args=(--results "$report_dir")
[ "$enforce" = 1 ] && report_args+=(--enforce)
report=$work/report.md
"$PY" -B "$bench_dir/report.py" "${report_args[@]}" >"$report" 2>"$work/report.err"
report_rc=$?
cat "$report"
targets_missed=0
case "$report_rc" in
  0) ;;
  3) # One line per missing figure, listed with the failed steps at the end.
     while IFS= read -r line; do
       [[ "$line" == "missing figure: "* ]] && failures+=("$line")
     done <"$work/report.err" ;;
  4) targets_missed=1; cat "$work/report.err" >&2 ;;
  *) cat "$work/report.err" >&2
     fail_step "report: report.py exited $report_rc: $(tail -1 "$work/report.err")" ;;
esac

if [ -n "$record_dir" ]; then
  if [ "$report_rc" = 0 ] || [ "$report_rc" = 4 ]; then
    doc=$repo_dir/docs/BENCHMARKS.md
    { echo; cat "$report"; } >>"$doc"
    log "appended the report to $doc (raw results in docs/$record_rel/)"
  else
    rm -rf "$record_dir"
    log "not recorded: the report is incomplete"
  fi
fi

if [ ${#failures[@]} -gt 0 ]; then
  echo
  echo "Steps that failed:"
  printf '  - %s\n' "${failures[@]}"
  exit 1
fi
if [ "$targets_missed" = 1 ]; then
  echo "run.sh --enforce: a target is not met (FAIL or SKIP above)" >&2
  exit 3
fi
exit 0
