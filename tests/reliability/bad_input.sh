#!/usr/bin/env bash
# Bad input through the CLI and the mount: each row must end in a clear
# one-line error (non-zero exit, no crash, no sanitizer report) and lose no
# data that was there before.
# Usage: bad_input.sh CMKFS CMKCTL FSX CRASH_WRITER [ROW...]
# Rows: corrupt_lmdb extent_file wrong_master_key unsupported_key
#       malformed_config backing_full racing_commands socket_not_allowed
#       bad_names untrusted_state_dir state_symlink fake_daemon export_mode
#       file_args stuck_import idle_connections huge_sizes forged_identity
#       big_pem untrusted_files backing_full_direct direct_io_unsupported
#       (default: all)
# shellcheck source=tests/reliability/lib.sh
source "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || fail "jq is not installed"
ROWS=("${@:5}")
[[ ${#ROWS[@]} -gt 0 ]] || ROWS=(corrupt_lmdb extent_file wrong_master_key unsupported_key
  malformed_config backing_full racing_commands socket_not_allowed bad_names
  untrusted_state_dir state_symlink fake_daemon export_mode file_args
  stuck_import idle_connections huge_sizes forged_identity big_pem
  untrusted_files backing_full_direct direct_io_unsupported)
TESTDATA=$(cd "$(dirname "$0")/../core/testdata" && pwd)

# expect_error REGEX CMD...: CMD fails (exit 1..127), prints an error that
# matches REGEX (case-insensitive), and shows no sign of a crash.
expect_error() {
  local re=$1
  shift
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  [[ $rc -ne 0 ]] || fail "'$*' succeeded; expected an error matching /$re/ (output: $out)"
  [[ $rc -lt 128 ]] || fail "'$*' crashed (exit $rc): $out"
  grep -Eq 'Sanitizer|Segmentation|terminate called|Aborted|core dumped|Assertion' <<<"$out" &&
    fail "'$*' crashed: $out"
  grep -Eiq -- "$re" <<<"$out" || fail "'$*' failed without a clear error (wanted /$re/): $out"
  echo "  ok: ${*: -4} -> $(tail -1 <<<"$out")"
}
# ctl_in DIR ARGS...: cmkctl on another state directory.
ctl_in() {
  local dir=$1
  shift
  timeout 120 "$CMKCTL_BIN" --state-dir "$dir" "$@"
}
# Two disks with known data; daemon stopped afterwards.
make_state_with_data() {
  start_daemon
  cmkctl disk create victim1 --size 8M >/dev/null
  cmkctl disk create keeper1 --size 8M >/dev/null
  head -c 4M /dev/urandom >"$WORK/victim1.bin"
  head -c 4M /dev/urandom >"$WORK/keeper1.bin"
  dd if="$WORK/victim1.bin" of="$MNT/disks/victim1" bs=1M conv=notrunc,fsync status=none
  dd if="$WORK/keeper1.bin" of="$MNT/disks/keeper1" bs=1M conv=notrunc,fsync status=none
  stop_daemon
}
# Mounts STATE_COPY at a second mountpoint; echoes nothing; sets M2.
M2=$REL_ROOT/mnt2
mkdir -p "$M2"
mount_copy() {
  timeout 60 "$CMKFS_BIN" --state-dir "$1" "$M2"
}
umount_copy() {
  local pid
  pid=$(cat "$1/cmkfs.pid" 2>/dev/null || true)
  if is_mounted "$M2"; then fusermount3 -u "$M2" || umount -l "$M2"; fi
  if [[ -n "$pid" ]]; then
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.05; done
  fi
}
REL_EXTRA_MOUNTS+=("$M2")

row_corrupt_lmdb() {
  make_state_with_data
  log "corrupt one resource record (its name length) in meta/data.mdb"
  local copy=$WORK/st-record
  cp -a "$STATE" "$copy"
  python3 - "$copy/meta/data.mdb" <<'PY'
import sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
needle = b"\x07\x00\x00\x00victim1"
n = 0
i = data.find(needle)
while i >= 0:
    data[i:i + 4] = b"\xff\xff\xff\x7f"
    n += 1
    i = data.find(needle, i + 1)
assert n > 0, "record not found"
open(path, "wb").write(data)
print(f"corrupted {n} copies of the record")
PY
  expect_error 'corrupt|resource record' ctl_in "$copy" disk show victim1
  expect_error 'corrupt|resource record' ctl_in "$copy" fsck
  ctl_in "$copy" disk show keeper1 >/dev/null || fail "an intact disk is unreadable next to a corrupt record"
  local out rc=0
  out=$(ctl_in "$copy" disk list 2>&1) || rc=$?
  [[ $rc -lt 128 ]] || fail "disk list crashed on a corrupt record: $out"
  [[ $rc -eq 0 ]] || grep -Eqi 'corrupt|resource record' <<<"$out" || fail "disk list failed without saying why: $out"
  echo "  ok: disk list -> exit $rc: $(tail -1 <<<"$out")"

  log "corrupt both LMDB meta pages"
  copy=$WORK/st-page
  cp -a "$STATE" "$copy"
  python3 - "$copy/meta/data.mdb" <<'PY'
import sys
path = sys.argv[1]
with open(path, "r+b") as f:
    for page in (0, 4096):
        f.seek(page + 16)
        f.write(b"\xa5" * 64)
PY
  expect_error 'corrupt|damaged|invalid|not an lmdb' ctl_in "$copy" disk list
  expect_error 'corrupt|damaged|invalid|not an lmdb' ctl_in "$copy" fsck
  expect_error 'corrupt|damaged|invalid|not an lmdb' mount_copy "$copy"
  is_mounted "$M2" && fail "cmkfs mounted a state directory with corrupt metadata"

  log "the original state is untouched"
  start_daemon
  cmp -s "$WORK/victim1.bin" <(head -c 4M "$MNT/disks/victim1") || fail "victim1 data lost"
  cmp -s "$WORK/keeper1.bin" <(head -c 4M "$MNT/disks/keeper1") || fail "keeper1 data lost"
  stop_daemon
}

row_extent_file() {
  make_state_with_data
  local pool
  pool=$(find "$STATE/extents" -type f | head -1)
  [[ -n "$pool" ]] || fail "no extent file under $STATE/extents"
  log "truncate the extent file $(basename "$pool") to half"
  local copy=$WORK/st-trunc
  cp -a "$STATE" "$copy"
  local cpool=$copy/extents/${pool#"$STATE"/extents/}
  truncate -s $(($(stat -c %s "$cpool") / 2)) "$cpool"
  expect_error 'extent|truncat|short|missing|beyond|size' ctl_in "$copy" fsck
  mount_copy "$copy" || fail "cmkfs did not mount a state with a truncated extent file"
  local r1=0 r2=0
  cmp -s "$WORK/victim1.bin" <(head -c 4M "$M2/disks/victim1" 2>/dev/null) || r1=$?
  cmp -s "$WORK/keeper1.bin" <(head -c 4M "$M2/disks/keeper1" 2>/dev/null) || r2=$?
  if [[ $r1 -ne 0 || $r2 -ne 0 ]]; then
    # Lost data must fail loudly (EIO), never read back as other bytes.
    local out rc=0
    out=$(dd if="$M2/disks/keeper1" bs=1M count=4 iflag=direct status=none of=/dev/null 2>&1) || rc=$?
    local out2 rc2=0
    out2=$(dd if="$M2/disks/victim1" bs=1M count=4 iflag=direct status=none of=/dev/null 2>&1) || rc2=$?
    [[ $rc -ne 0 || $rc2 -ne 0 ]] || fail "data of the truncated extent file reads back as wrong bytes without an error"
    grep -qi 'input/output error' <<<"$out$out2" || fail "reading lost extents failed without EIO: $out $out2"
    echo "  ok: reads of lost extents fail with EIO"
  else
    fail "both disks read back intact although the extent file lost half its bytes"
  fi
  umount_copy "$copy"

  log "remove the extent file"
  copy=$WORK/st-missing
  cp -a "$STATE" "$copy"
  rm -f "$copy/extents/${pool#"$STATE"/extents/}"
  expect_error 'extent|missing|not found|no such' ctl_in "$copy" fsck
  if mount_copy "$copy" 2>"$WORK/m.err"; then
    local rc=0
    dd if="$M2/disks/keeper1" bs=1M count=4 iflag=direct status=none of=/dev/null 2>"$WORK/dd.err" || rc=$?
    [[ $rc -ne 0 ]] || { cmp -s "$WORK/keeper1.bin" <(head -c 4M "$M2/disks/keeper1") &&
      fail "keeper1 reads back although its extent file is gone"; fail "a disk whose extent file is gone reads without an error"; }
    echo "  ok: mount works, reads fail: $(head -1 "$WORK/dd.err")"
    umount_copy "$copy"
  else
    grep -Eiq 'extent|missing|no such' "$WORK/m.err" || fail "cmkfs refused the state without a clear reason: $(cat "$WORK/m.err")"
    echo "  ok: cmkfs refuses: $(tail -1 "$WORK/m.err")"
  fi
  start_daemon
  cmp -s "$WORK/keeper1.bin" <(head -c 4M "$MNT/disks/keeper1") || fail "original keeper1 data lost"
  stop_daemon
}

row_wrong_master_key() {
  make_state_with_data
  log "replace the vault master key"
  cp -a "$STATE/vault.key" "$WORK/vault.key.good"
  head -c 32 /dev/urandom >"$STATE/vault.key"
  chmod 600 "$STATE/vault.key"
  expect_error 'master key' cmkctl vault list
  expect_error 'master key' cmkctl disk list
  expect_error 'master key' timeout 60 "$CMKFS_BIN" --state-dir "$STATE" "$MNT"
  is_mounted "$MNT" && fail "cmkfs mounted with a wrong vault master key"
  log "a master key file readable by others, or of the wrong length"
  cp -a "$WORK/vault.key.good" "$STATE/vault.key"
  chmod 644 "$STATE/vault.key"
  expect_error '0600|permission|mode|group|other' cmkctl vault list
  chmod 600 "$STATE/vault.key"
  head -c 31 "$WORK/vault.key.good" >"$STATE/vault.key"
  expect_error '32|length|size|bytes' cmkctl vault list
  log "the right key restores everything"
  cp -a "$WORK/vault.key.good" "$STATE/vault.key"
  start_daemon
  cmp -s "$WORK/victim1.bin" <(head -c 4M "$MNT/disks/victim1") || fail "data lost after a wrong master key"
  stop_daemon
}

row_unsupported_key() {
  cmkctl vault create badkeys --purge-protection >/dev/null
  for size in 1024 2047 8192 0x800 abc; do
    expect_error '2048.*3072.*4096' cmkctl key create badkeys "k$RANDOM" --size "$size"
  done
  expect_error 'RSA' cmkctl key create badkeys kx --kty EC
  expect_error 'premium|HSM' cmkctl key create badkeys kh --kty RSA-HSM --size 2048
  expect_error 'EC|not.*RSA|RSA.*only' cmkctl key import badkeys kec --pem "$TESTDATA/ec_p256_pkcs8.pem"
  expect_error 'ED25519|not.*RSA|RSA.*only' cmkctl key import badkeys ked --pem "$TESTDATA/ed25519.pem"
  expect_error '1024|2048' cmkctl key import badkeys k1024 --pem "$TESTDATA/rsa1024_pkcs8.pem"
  expect_error 'encrypted' cmkctl key import badkeys kenc --pem "$TESTDATA/rsa2048_encrypted_pkcs8.pem"
  expect_error 'public' cmkctl key import badkeys kpub --pem "$TESTDATA/rsa2048_public.pem"
  printf 'not a key\n' >"$WORK/garbage.pem"
  expect_error 'PEM|key' cmkctl key import badkeys kgarb --pem "$WORK/garbage.pem"
  expect_error 'no such|not found|cannot read|does not exist' cmkctl key import badkeys kmiss --pem "$WORK/missing.pem"
  local n
  n=$(cmkctl key list badkeys -o json | jq 'length')
  [[ "$n" == 0 ]] || fail "refused keys left $n keys behind"
  cmkctl key import badkeys kok --pem "$TESTDATA/rsa2048_pkcs8.pem" >/dev/null ||
    fail "a valid 2048-bit PEM is refused after the bad ones"
}

row_malformed_config() {
  local c=$WORK/bad.toml
  local -a cases=(
    'state_dir = "/tmp/x|:1'
    '[watcher]\npoll_interval = 42|:2.*poll_interval'
    '[watcher]\npoll_interval = "5 parsecs"|poll_interval'
    '[mount]\nmode = "0999"|mode'
    'no_such_key = 1|no_such_key'
    '[keystore]\ndir = 7|keystore.dir|dir'
    '[limits]\ndisk_encryption_sets_per_region = -1|disk_encryption_sets_per_region'
  )
  for entry in "${cases[@]}"; do
    printf '%b\n' "${entry%%|*}" >"$c"
    expect_error "bad.toml.*(${entry#*|})|(${entry#*|}).*bad.toml" timeout 60 "$CMKCTL_BIN" --config "$c" --state-dir "$STATE" vault list
  done
  printf '[watcher]\npoll_interval = 42\n' >"$c"
  expect_error 'bad.toml' timeout 60 "$CMKFS_BIN" --config "$c" --state-dir "$STATE" "$MNT"
  is_mounted "$MNT" && fail "cmkfs mounted with a malformed config"
  expect_error 'no such|not found|does not exist' timeout 60 "$CMKCTL_BIN" --config "$WORK/none.toml" vault list
  return 0
}

# Extra daemon arguments of row_backing_full (row_backing_full_direct sets a
# config there).
FULL_DAEMON_ARGS=()
row_backing_full() {
  log "state directory on a 64 MiB ext4 (loop)${FULL_DAEMON_ARGS[*]:+, daemon ${FULL_DAEMON_ARGS[*]}}"
  local img=$WORK/small.img small=$REL_ROOT/small
  truncate -s 64M "$img"
  mkfs.ext4 -q -F -m 0 "$img"
  mkdir -p "$small"
  mount -o loop "$img" "$small"
  REL_EXTRA_MOUNTS+=("$small")
  STATE=$small/state
  mkdir -p "$STATE"
  start_daemon "${FULL_DAEMON_ARGS[@]}"
  cmkctl disk create full --size 128M >/dev/null
  head -c 4M /dev/urandom >"$WORK/early.bin"
  dd if="$WORK/early.bin" of="$MNT/disks/full" bs=1M conv=notrunc,fsync status=none
  local out rc=0
  out=$(dd if=/dev/urandom of="$MNT/disks/full" bs=1M seek=4 count=120 conv=notrunc,fsync status=none 2>&1) || rc=$?
  [[ $rc -ne 0 ]] || fail "120 MiB of writes succeeded on a 64 MiB backing filesystem"
  grep -qi 'no space left' <<<"$out" || fail "writes on a full backing filesystem failed without ENOSPC: $out"
  echo "  ok: writes fail with: $(tail -1 <<<"$out")"
  cmp -s "$WORK/early.bin" <(head -c 4M "$MNT/disks/full") || fail "data written before the disk filled up is lost"
  cmkctl disk list >/dev/null || fail "disk list fails while the backing filesystem is full"
  expect_fsck_clean
  stop_daemon
  start_daemon "${FULL_DAEMON_ARGS[@]}"
  cmp -s "$WORK/early.bin" <(head -c 4M "$MNT/disks/full") || fail "early data lost after a remount"
  expect_fsck_clean
  log "after freeing space, writes work again"
  out=$(cmkctl disk delete full 2>&1) || fail "cannot delete a disk to free space on a full backing filesystem: $out"
  cmkctl disk create again --size 8M >/dev/null || fail "cannot create a disk after freeing space"
  dd if="$WORK/early.bin" of="$MNT/disks/again" bs=1M conv=notrunc,fsync status=none ||
    fail "writes fail after space was freed"
  stop_daemon
}

# The same with backing_io = "direct": a short O_DIRECT write at the end of
# the space still fails with ENOSPC and loses nothing written before.
row_backing_full_direct() {
  printf '[engine]\nbacking_io = "direct"\n' >"$WORK/direct.toml"
  FULL_DAEMON_ARGS=(--config "$WORK/direct.toml")
  row_backing_full
}

# backing_io = "direct" on a filesystem without O_DIRECT: the daemon refuses
# to start with one line naming the pool file and the way out.
row_direct_io_unsupported() {
  log "state directory on a ramfs (no O_DIRECT), backing_io = \"direct\""
  local ram=$REL_ROOT/ram
  mkdir -p "$ram"
  mount -t ramfs -o mode=0700 ramfs "$ram"
  REL_EXTRA_MOUNTS+=("$ram")
  STATE=$ram/state
  mkdir -p "$STATE"
  chmod 700 "$STATE"
  cmkctl disk create d1 --size 16M >/dev/null
  printf '[engine]\nbacking_io = "direct"\n' >"$WORK/direct.toml"
  expect_error "$ram/state/.*does not support O_DIRECT.*backing_io = \"buffered\"" \
    timeout 60 "$CMKFS_BIN" --config "$WORK/direct.toml" --state-dir "$STATE" "$MNT"
  is_mounted "$MNT" && fail "cmkfs mounted a pool it cannot open with O_DIRECT"
  # (ramfs reports no free space, so the disk is read, not written.)
  log "buffered on the same state directory serves the disk"
  start_daemon
  cmp -s <(head -c 16M /dev/zero) "$MNT/disks/d1" || fail "the new disk does not read as zeros"
  stop_daemon
}

# race N CMD...: runs CMD N times at once; prints the exit codes, sorted.
race() {
  local n=$1
  shift
  local pids=() i
  for ((i = 0; i < n; i++)); do
    ( "$@" >"$WORK/race.$i.out" 2>&1; echo $? >"$WORK/race.$i.rc" ) &
    pids+=($!)
  done
  wait "${pids[@]}"
  for ((i = 0; i < n; i++)); do cat "$WORK/race.$i.rc"; done | sort -n | tr '\n' ' '
}
race_expect_one_winner() {
  local what=$1 re=$2
  shift 2
  local codes ok=0 i
  codes=$(race 4 "$@")
  for ((i = 0; i < 4; i++)); do
    local rc
    rc=$(cat "$WORK/race.$i.rc")
    if [[ $rc -eq 0 ]]; then
      ok=$((ok + 1))
    else
      [[ $rc -lt 128 ]] || fail "$what: a racer crashed: $(cat "$WORK/race.$i.out")"
      grep -Eiq "$re" "$WORK/race.$i.out" || fail "$what: a loser failed without a clear error: $(cat "$WORK/race.$i.out")"
    fi
  done
  [[ $ok -eq 1 ]] || fail "$what: $ok of 4 racers succeeded (exit codes $codes)"
  echo "  ok: $what: one winner, losers: $(grep -hv '^$' "$WORK"/race.*.out | sort -u | head -2 | tr '\n' ' ')"
}
row_racing_commands() {
  start_daemon
  race_expect_one_winner "disk create (daemon)" 'already exists' cmkctl disk create race --size 16M
  race_expect_one_winner "snapshot create (daemon)" 'already exists' cmkctl snapshot create rs --source race
  race_expect_one_winner "snapshot delete (daemon)" 'not found|does not exist|no snapshot' cmkctl snapshot delete rs
  race_expect_one_winner "disk delete (daemon)" 'not found|does not exist|no disk' cmkctl disk delete race
  expect_fsck_clean
  stop_daemon
  race_expect_one_winner "disk create (no daemon)" 'already exists|in use|busy' cmkctl disk create race2 --size 16M
  local n
  n=$(cmkctl disk list -o json | jq '[.[] | select(.name == "race2")] | length')
  [[ "$n" == 1 ]] || fail "disk race2 listed $n times"
  expect_fsck_clean
}

row_socket_not_allowed() {
  start_daemon
  chmod 0711 "$REL_ROOT" "$STATE"
  local nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  expect_error 'permission|denied|not allowed' "${nobody[@]}" "$CMKCTL_BIN" --state-dir "$STATE" disk create evil --size 1M
  log "socket opened to everyone: the daemon checks the peer's uid itself"
  chmod 0666 "$STATE/control.sock"
  expect_error 'permission denied|only root' "${nobody[@]}" "$CMKCTL_BIN" --state-dir "$STATE" disk create evil --size 1M
  chmod 0600 "$STATE/control.sock"
  chmod 0700 "$REL_ROOT" "$STATE"
  cmkctl disk show evil >/dev/null 2>&1 && fail "a refused client created a disk"
  [[ -e "$MNT/disks/evil" ]] && fail "a refused client created a disk file"
  cmkctl disk list >/dev/null || fail "root lost access after the refusals"
  stop_daemon
}

# Item 10 of issue 14: a stuck import must not block the control plane.
row_stuck_import() {
  start_daemon
  log "an import from a FIFO that never delivers is refused at once"
  mkfifo "$WORK/never.fifo"
  expect_error 'is a FIFO.*regular file' timeout 20 "$CMKCTL_BIN" --state-dir "$STATE" \
    disk create fifo1 --import "$WORK/never.fifo"
  cmkctl disk show fifo1 >/dev/null 2>&1 && fail "a half-made disk fifo1 was left"

  log "a customer-key disk, and an import source on a second cmkfs that is then stopped"
  cmkctl vault create stuckv --purge-protection >/dev/null
  cmkctl key create stuckv sk --size 2048 >/dev/null
  local identity
  identity=$(cmkctl des create sdes --key-id cmk://stuckv/keys/sk)
  cmkctl vault set-policy stuckv --object-id "$identity" --key-permissions get wrapKey unwrapKey >/dev/null
  cmkctl disk create cust1 --size 8M --des sdes >/dev/null
  local st2=$WORK/st2 pid2
  mkdir -p "$st2"
  mount_copy "$st2"
  pid2=$(cat "$st2/cmkfs.pid")
  REL_CHILDREN+=("$pid2")
  ctl_in "$st2" disk create src --size 8M >/dev/null
  # O_DIRECT: nothing of it in the page cache, so every read reaches cmkfs #2.
  head -c 8M /dev/urandom | dd of="$M2/disks/src" bs=1M oflag=direct conv=notrunc status=none
  kill -STOP "$pid2"
  "$CMKCTL_BIN" --state-dir "$STATE" disk create imp --import "$M2/disks/src" >/dev/null 2>&1 &
  local imp_pid=$!
  REL_CHILDREN+=("$imp_pid")
  sleep 1
  alive "$imp_pid" || fail "the import from a stopped source finished; expected it to stall"

  log "while it stalls: disk list and the revocation answer at once, and the disk seals"
  local t0=$SECONDS
  timeout 5 "$CMKCTL_BIN" --state-dir "$STATE" disk list >/dev/null ||
    fail "disk list did not answer within 5 s while an import stalled"
  timeout 5 "$CMKCTL_BIN" --state-dir "$STATE" key set-attributes stuckv sk --enabled false >/dev/null ||
    fail "key set-attributes --enabled false did not answer within 5 s while an import stalled"
  local state=
  for _ in $(seq 1 150); do
    state=$(cmkctl disk show cust1 -o json | jq -r .state)
    [[ "$state" == sealed ]] && break
    sleep 0.1
  done
  [[ "$state" == sealed ]] || fail "cust1 did not seal within 15 s of the revocation (state $state)"
  log "  answered and sealed in $((SECONDS - t0)) s"

  log "the importing client is killed: once the source wakes, the import is cancelled"
  kill -KILL "$imp_pid"
  wait "$imp_pid" 2>/dev/null || true
  kill -CONT "$pid2"
  local gone=0
  for _ in $(seq 1 100); do
    if ! cmkctl disk show imp >/dev/null 2>&1; then gone=1; break; fi
    sleep 0.1
  done
  [[ $gone == 1 ]] || fail "the killed client's import went on: disk imp exists"
  sleep 1
  cmkctl disk show imp >/dev/null 2>&1 && fail "the killed client's import finished later: disk imp exists"
  cmkctl key set-attributes stuckv sk --enabled true >/dev/null
  expect_fsck_clean
  umount_copy "$st2"
  stop_daemon
}

# Item 10 of issue 14: idle control connections cost no thread, extra ones
# are refused with a clear error, and the daemon answers once they go.
row_idle_connections() {
  start_daemon
  local pid
  pid=$(daemon_pid)
  python3 - "$STATE/control.sock" "$pid" "$CMKCTL_BIN" "$STATE" <<'PY' || fail "idle connections: see above"
import os, socket, struct, subprocess, sys, time
path, pid, cmkctl, state = sys.argv[1:5]
threads = lambda: len(os.listdir(f"/proc/{pid}/task"))
before = threads()
conns = []
for _ in range(300):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    conns.append(s)
time.sleep(0.5)
during = threads()
print(f"  daemon threads: {before} before, {during} with 300 idle connections")
if during > before + 4:
    sys.exit(f"FAIL: 300 idle connections made {during - before} threads")

def reply_err(s):
    s.settimeout(5)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    if len(data) < 16:
        return None
    payload = data[4:]
    out_len = struct.unpack_from("<I", payload, 4)[0]
    err_len = struct.unpack_from("<I", payload, 8 + out_len)[0]
    return payload[12 + out_len:12 + out_len + err_len].decode()

refused = [reply_err(s) for s in conns[64:]]
bad = [e for e in refused if e is None or "control connections are open (the limit)" not in e]
if bad:
    sys.exit(f"FAIL: {len(bad)} of {len(refused)} extra connections got no clear refusal: {bad[:2]}")
print(f"  {len(refused)} extra connections refused: {refused[0].strip()}")
r = subprocess.run([cmkctl, "--state-dir", state, "disk", "list"], capture_output=True, text=True, timeout=20)
if r.returncode != 1 or "the limit" not in r.stderr:
    sys.exit(f"FAIL: cmkctl with every slot taken: exit {r.returncode}, {r.stderr!r}")
print(f"  cmkctl with every slot taken: {r.stderr.strip()}")
for s in conns:
    s.close()
time.sleep(0.3)
r = subprocess.run([cmkctl, "--state-dir", state, "disk", "list"], capture_output=True, text=True, timeout=20)
if r.returncode != 0:
    sys.exit(f"FAIL: the daemon did not answer once the idle connections closed: {r.stderr!r}")
print("  once they closed, the daemon answered")
PY
  stop_daemon
}

row_bad_names() {
  start_daemon
  local long
  long=$(printf 'a%.0s' $(seq 1 300))
  for name in 'a/b' '../x' '..' '.' '.hidden' "$long" '' 'x y' 'dïsk' '-flag' 'a\b' 'x:y'; do
    expect_error 'name|invalid|characters|unknown flag' cmkctl disk create "$name" --size 1M
  done
  cmkctl disk create ok1 --size 1M >/dev/null
  for name in 'a/b' '..' "$long"; do
    expect_error 'name|invalid|characters' cmkctl snapshot create "$name" --source ok1
    expect_error 'name|invalid|characters' cmkctl image create "$name" --source ok1
    expect_error 'name|invalid|characters' cmkctl vault create "$name"
  done
  local n
  n=$(cmkctl disk list -o json | jq 'length')
  [[ "$n" == 1 ]] || fail "refused names left $n disks (expected only ok1)"
  [[ "$(ls "$MNT/disks")" == ok1 ]] || fail "unexpected entries in $MNT/disks: $(ls "$MNT/disks")"
  expect_fsck_clean
  stop_daemon
}

# Another user, and a root-owned sticky directory (like /tmp) it can create
# things in; REL_ROOT is opened for traversal (restored by restore_rel_root).
NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups)
PUB=$REL_ROOT/pub
public_dir() {
  chmod 0711 "$REL_ROOT"
  mkdir -p "$PUB"
  chmod 1777 "$PUB"
}
restore_rel_root() { chmod 0700 "$REL_ROOT"; }

# Issue 14 item 1: a state directory, an ancestor or a file that someone else
# owns or may write is refused before anything is created in it.
row_untrusted_state_dir() {
  public_dir
  local evil=$PUB/evil
  log "another user pre-creates a state directory with its own (empty, 0666) files"
  "${NOBODY[@]}" bash -c "umask 000 && mkdir -p '$evil/vault' '$evil/extents' &&
    head -c 32 /dev/urandom >'$evil/vault.key' && chmod 600 '$evil/vault.key' &&
    : >'$evil/vault/data.mdb' && : >'$evil/extents/pool.0'"
  expect_error "$evil is owned by uid 65534, mode 0777" ctl_in "$evil" vault create v1 --purge-protection
  expect_error "$evil is owned by uid 65534" timeout 60 "$CMKFS_BIN" --state-dir "$evil" "$MNT"
  is_mounted "$MNT" && fail "cmkfs mounted a state directory owned by another user"
  [[ ! -s "$evil/vault/data.mdb" && ! -s "$evil/extents/pool.0" ]] ||
    fail "root wrote into a state directory owned by another user"

  log "a group-writable (not sticky) directory above the state directory"
  mkdir -p "$REL_ROOT/gw"
  chmod 0777 "$REL_ROOT/gw"
  expect_error "$REL_ROOT/gw is writable by group or others" ctl_in "$REL_ROOT/gw/state" vault list
  [[ ! -e "$REL_ROOT/gw/state" ]] || fail "a state directory was created under a group-writable directory"

  log "a state directory made by cmkfs is 0700 all through"
  local st=$WORK/fresh
  ctl_in "$st" vault list >/dev/null
  local d
  for d in "$st" "$st/meta" "$st/extents" "$st/vault"; do
    [[ "$(stat -c %a "$d")" == 700 ]] || fail "$d has mode $(stat -c %a "$d"), not 0700"
  done
  log "files inside it that another user owns, or that others may write"
  chown 65534 "$st/vault.key"
  expect_error "vault.key is owned by uid 65534, mode 0600" ctl_in "$st" vault list
  chown 0 "$st/vault.key"
  chmod 0666 "$st/extents/pool.0"
  expect_error "pool.0 has uid 0, mode 0666; it must not be writable by group or others" ctl_in "$st" disk list
  expect_error "pool.0 has uid 0, mode 0666" timeout 60 "$CMKFS_BIN" --state-dir "$st" "$MNT"
  is_mounted "$MNT" && fail "cmkfs mounted with a world-writable extent pool"
  chmod 0600 "$st/extents/pool.0"
  chmod 0664 "$st/meta/data.mdb"
  expect_error "data.mdb has uid 0, mode 0664" ctl_in "$st" disk list
  chmod 0600 "$st/meta/data.mdb"
  ctl_in "$st" vault list >/dev/null || fail "the repaired state directory is refused"
  restore_rel_root
}

# Issue 14 item 2: a symbolic link in the state directory is refused; the
# daemon never writes through one.
row_state_symlink() {
  cmkctl vault list >/dev/null
  printf 'root only\n' >"$WORK/root-only"
  chmod 0600 "$WORK/root-only"
  log "cmkfs.pid is a symbolic link to a root-only file"
  ln -s "$WORK/root-only" "$STATE/cmkfs.pid"
  expect_error "cmkfs.pid is a symbolic link" timeout 60 "$CMKFS_BIN" --state-dir "$STATE" "$MNT"
  is_mounted "$MNT" && fail "cmkfs mounted with a cmkfs.pid symlink"
  [[ "$(cat "$WORK/root-only")" == "root only" ]] || fail "the daemon wrote through the cmkfs.pid symlink"
  rm "$STATE/cmkfs.pid"
  log "the extent pool and LMDB's lock file as symbolic links"
  mv "$STATE/extents/pool.0" "$WORK/pool.0"
  ln -s "$WORK/root-only" "$STATE/extents/pool.0"
  expect_error "extents/pool.0 is a symbolic link" cmkctl disk list
  rm "$STATE/extents/pool.0"
  mv "$WORK/pool.0" "$STATE/extents/pool.0"
  mv "$STATE/meta/lock.mdb" "$WORK/lock.mdb"
  ln -s "$WORK/root-only" "$STATE/meta/lock.mdb"
  expect_error "meta/lock.mdb is a symbolic link" cmkctl disk list
  [[ "$(cat "$WORK/root-only")" == "root only" ]] || fail "LMDB wrote through the lock.mdb symlink"
  rm "$STATE/meta/lock.mdb"
  log "a stale regular pid file is replaced by a new 0600 one"
  echo 999999 >"$STATE/cmkfs.pid"
  chmod 0644 "$STATE/cmkfs.pid"
  start_daemon
  [[ "$(daemon_pid)" != 999999 ]] || fail "the stale pid file was kept"
  [[ "$(stat -c %a "$STATE/cmkfs.pid")" == 600 ]] || fail "cmkfs.pid has mode $(stat -c %a "$STATE/cmkfs.pid")"
  stop_daemon
}

# Issue 14 item 3: cmkctl sends nothing to a control socket that another
# user serves.
row_fake_daemon() {
  public_dir
  local fake=$PUB/fake
  "${NOBODY[@]}" mkdir -m 0755 "$fake"
  "${NOBODY[@]}" /usr/bin/python3 - "$fake/control.sock" "$fake/got" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(4)
open(sys.argv[2] + ".ready", "w").close()
s.settimeout(60)
c, _ = s.accept()
c.settimeout(10)
data = b""
try:
    while True:
        b = c.recv(65536)
        if not b:
            break
        data += b
except socket.timeout:
    pass
open(sys.argv[2], "wb").write(data)
PY
  local server=$!
  REL_CHILDREN+=("$server")
  for _ in $(seq 1 100); do [[ -e "$fake/got.ready" ]] && break; sleep 0.1; done
  [[ -e "$fake/got.ready" ]] || fail "the fake daemon did not start"
  expect_error "control socket $fake/control.sock is served by uid 65534" \
    ctl_in "$fake" key set-attributes v1 k1 --enabled false
  wait "$server" || fail "the fake daemon failed"
  [[ ! -s "$fake/got" ]] || fail "cmkctl sent its command to a socket served by uid 65534: $(tr -c '[:print:]' . <"$fake/got")"
  echo "  ok: the fake daemon received nothing"
  restore_rel_root
}

# Issue 14 item 4: exports are 0600 whatever the umask, and never written
# through a symbolic link.
row_export_mode() {
  (umask 000 && start_daemon) || fail "cmkfs did not start"
  cmkctl disk create ex1 --size 1M >/dev/null
  head -c 64K /dev/urandom >"$WORK/ex1.bin"
  dd if="$WORK/ex1.bin" of="$MNT/disks/ex1" bs=64K conv=notrunc,fsync status=none
  cmkctl disk export ex1 "$WORK/ex1.raw" >/dev/null
  [[ "$(stat -c %a "$WORK/ex1.raw")" == 600 ]] || fail "the daemon's export has mode $(stat -c %a "$WORK/ex1.raw")"
  cmp -s "$WORK/ex1.bin" <(head -c 64K "$WORK/ex1.raw") || fail "the export holds other data"
  local f
  for f in cmkfs.pid control.sock; do
    [[ "$(stat -c %a "$STATE/$f")" == 600 ]] || fail "$f has mode $(stat -c %a "$STATE/$f")"
  done
  printf 'keep\n' >"$WORK/victim"
  ln -s "$WORK/victim" "$WORK/link.raw"
  expect_error "already exists" cmkctl disk export ex1 "$WORK/link.raw"
  [[ "$(cat "$WORK/victim")" == keep ]] || fail "the export wrote through a symbolic link"
  stop_daemon
  (umask 000 && cmkctl disk export ex1 "$WORK/ex2.raw" >/dev/null) || fail "local export failed"
  [[ "$(stat -c %a "$WORK/ex2.raw")" == 600 ]] || fail "cmkctl's export has mode $(stat -c %a "$WORK/ex2.raw")"
}

# Issue 14 item 5: the forwarded command's file arguments are found by their
# place in the command, not by their text.
row_file_args() {
  start_daemon
  cmkctl disk create d1 --size 1M >/dev/null
  local f="o$$.raw"
  [[ ! -e "/$f" ]] || fail "/$f exists already"
  (cd "$WORK" && cmkctl --subscription "$f" disk export d1 "$f" >/dev/null) ||
    fail "disk export with a flag value equal to the file name failed"
  if [[ -e "/$f" ]]; then
    rm -f "/$f"
    fail "the export went to /$f, the daemon's working directory"
  fi
  [[ -f "$WORK/$f" ]] || fail "no export in the caller's directory $WORK/$f"
  (cd "$WORK" && cmkctl disk export d1 d1 >/dev/null) || fail "'disk export d1 d1' failed"
  [[ -f "$WORK/d1" && "$(stat -c %s "$WORK/d1")" == 1048576 ]] || fail "'disk export d1 d1' made no 1 MiB $WORK/d1"
  echo "  ok: exports land in the caller's directory"
  stop_daemon
}

# Issue 14 item 6: sizes near 2^64 overflowed (the table showed -4096, ls
# ?????, stat EIO). Every size is bounded by [limits] max_disk_size.
row_huge_sizes() {
  start_daemon
  expect_error 'disk size 18446744073709547520 is not accepted: use a multiple of 4096 bytes from 4096 \(4 KiB\) to 70368744177664 \(64 TiB' \
    cmkctl disk create huge --size 18446744073709547520
  expect_error "size '99999999999999999999' is too large" cmkctl disk create huge --size 99999999999999999999
  cmkctl disk show huge >/dev/null 2>&1 && fail "a refused size created a disk"
  cmkctl disk create largest --size 64T >/dev/null
  [[ "$(stat -c %s "$MNT/disks/largest")" == 70368744177664 ]] ||
    fail "the largest disk shows size $(stat -c %s "$MNT/disks/largest")"
  expect_error 'new size of disk largest 71468255805440 is not accepted: the largest disk is 70368744177664 bytes \(64 TiB' \
    cmkctl disk resize largest --size 65T
  cmkctl snapshot create snap1 --source largest >/dev/null
  expect_error 'disk size 18446744073709547520 is not accepted' \
    cmkctl disk create clone1 --source snap1 --size 18446744073709547520
  stop_daemon
  log "max_disk_size from the config bounds create and import"
  printf '[limits]\nmax_disk_size = "1G"\n' >"$WORK/limits.toml"
  start_daemon --config "$WORK/limits.toml"
  truncate -s 2G "$WORK/big.raw"
  expect_error "file $WORK/big.raw \\(2147483648 bytes\\) is larger than the largest disk, 1073741824 bytes \\(1 GiB" \
    cmkctl disk create imp --import "$WORK/big.raw"
  expect_error 'to 1073741824 \(1 GiB, \[limits\] max_disk_size\)' cmkctl disk create d2 --size 2G
  cmkctl disk show imp >/dev/null 2>&1 && fail "a refused import created a disk"
  [[ "$(ls "$MNT/disks")" == largest ]] || fail "unexpected entries in $MNT/disks: $(ls "$MNT/disks")"
  expect_fsck_clean
  stop_daemon
}

# Issue 14 item 8: `--as $'evil\n<entry>'` printed a forged admin line in
# `vault audit`.
row_forged_identity() {
  start_daemon
  cmkctl vault create forgev >/dev/null
  cmkctl key create forgev k --size 2048 >/dev/null
  local forged=$'evil\n2020-01-01T00:00:00Z  admin  key.purge  cmk://forgev/keys/k  ok'
  expect_error "--as: 'evil\\\\n2020-01-01T00:00:00Z .*' is not an object id; expected 36 characters" \
    cmkctl --as "$forged" key show forgev k
  expect_error 'is not an object id' cmkctl vault set-policy forgev --object-id "$forged" --key-permissions get
  local out
  out=$(cmkctl vault audit forgev) || fail "vault audit failed"
  grep -q '^2020-01-01' <<<"$out" && fail "vault audit shows a forged line: $out"
  grep -q 'evil' <<<"$out" && fail "a refused identity reached the audit log: $out"
  echo "  ok: vault audit has $(wc -l <<<"$out") lines, none forged"
  stop_daemon
}

# Issue 14 item 7: the PEM file was read without a limit.
row_big_pem() {
  start_daemon
  cmkctl vault create pemv >/dev/null
  { echo '-----BEGIN PRIVATE KEY-----'; head -c 70000 /dev/zero | tr '\0' A; echo; echo '-----END PRIVATE KEY-----'; } >"$WORK/big.pem"
  expect_error "PEM file $WORK/big.pem is larger than the limit of 64 KiB \\(65536 bytes\\)" \
    cmkctl key import pemv k --pem "$WORK/big.pem"
  expect_error 'PEM file /dev/zero is larger than the limit of 64 KiB' cmkctl key import pemv k --pem /dev/zero
  cmkctl key show pemv k >/dev/null 2>&1 && fail "a refused PEM file created a key"
  stop_daemon
}

# Issue 14 item 9: the config (on_seal, the PKCS#11 module), the module, the
# PIN file and the passphrase file were trusted whatever their owner and mode.
row_untrusted_files() {
  local c=$WORK/trust.toml
  printf '[watcher]\non_seal = "touch %s/pwned"\n' "$WORK" >"$c"
  chmod 0666 "$c"
  expect_error "config file $c \\(owner uid 0, mode 0666\\) must be owned by root and not writable by group or others" \
    timeout 60 "$CMKCTL_BIN" --config "$c" --state-dir "$STATE" vault list
  expect_error "config file $c .* must be owned by root" timeout 60 "$CMKFS_BIN" --config "$c" --state-dir "$STATE" "$MNT"
  is_mounted "$MNT" && fail "cmkfs mounted with a world-writable config"
  chmod 0644 "$c"
  chown 65534:65534 "$c"
  expect_error "config file $c \\(owner uid 65534, mode 0644\\) must be owned by root" \
    timeout 60 "$CMKCTL_BIN" --config "$c" --state-dir "$STATE" vault list
  chown 0:0 "$c"
  mkdir -p "$WORK/open" && chmod 0777 "$WORK/open" && cp -p "$c" "$WORK/open/c.toml"
  expect_error "is not trusted: directory $WORK/open \\(owner uid 0, mode 0777\\)" \
    timeout 60 "$CMKCTL_BIN" --config "$WORK/open/c.toml" --state-dir "$STATE" vault list

  log "PKCS#11 PIN file and module"
  mkdir -p "$WORK/tokens"
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$WORK" >"$WORK/softhsm2.conf"
  export SOFTHSM2_CONF=$WORK/softhsm2.conf
  softhsm2-util --init-token --free --label cmkfs --pin 1234 --so-pin 5678 >/dev/null
  echo 1234 >"$WORK/hsm.pin"
  chmod 0644 "$WORK/hsm.pin"
  local module=/usr/lib/softhsm/libsofthsm2.so
  printf '[pkcs11]\nmodule = "%s"\ntoken_label = "cmkfs"\npin_file = "%s/hsm.pin"\n' "$module" "$WORK" >"$c"
  chmod 0644 "$c"
  ctl_hsm() { timeout 120 "$CMKCTL_BIN" --config "$c" --state-dir "$STATE" "$@"; }
  ctl_hsm vault create hsmv --sku premium --purge-protection >/dev/null
  expect_error "PKCS#11 PIN file $WORK/hsm.pin \\(owner uid 0, mode 0644\\) must be owned by root and not accessible by group or others" \
    ctl_hsm key create hsmv k --kty RSA-HSM --size 2048
  chmod 0600 "$WORK/hsm.pin"
  cp "$(readlink -f "$module")" "$WORK/libevil.so"
  chmod 0666 "$WORK/libevil.so"
  printf '[pkcs11]\nmodule = "%s/libevil.so"\ntoken_label = "cmkfs"\npin_file = "%s/hsm.pin"\n' "$WORK" "$WORK" >"$c"
  expect_error "PKCS#11 module $WORK/libevil.so \\(owner uid 0, mode 0666\\) must be owned by root" \
    ctl_hsm key create hsmv k --kty RSA-HSM --size 2048
  ctl_hsm key show hsmv k >/dev/null 2>&1 && fail "a refused PIN file or module created a key"
  printf '[pkcs11]\nmodule = "%s"\ntoken_label = "cmkfs"\npin_file = "%s/hsm.pin"\n' "$module" "$WORK" >"$c"
  ctl_hsm key create hsmv k --kty RSA-HSM --size 2048 >/dev/null || fail "a trusted PIN file and module were refused"

  log "vault passphrase file"
  echo 'correct horse battery staple' >"$WORK/pass"
  chmod 0644 "$WORK/pass"
  printf '[keystore]\npassphrase_file = "%s/pass"\n' "$WORK" >"$c"
  expect_error "passphrase file $WORK/pass \\(owner uid 0, mode 0644\\) must be owned by root and not accessible by group or others" \
    timeout 60 "$CMKCTL_BIN" --config "$c" --state-dir "$WORK/pass-state" vault list
  [[ -e "$WORK/pwned" ]] && fail "on_seal of a refused config ran"
  return 0
}

for row in "${ROWS[@]}"; do
  log "== $row"
  "row_$row"
done
