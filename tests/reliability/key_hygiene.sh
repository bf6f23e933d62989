#!/usr/bin/env bash
# Key hygiene: the daemon must not keep the DEK of a sealed or closed disk in
# memory, must never log it, and must keep key material mlocked; the state
# directory must hold neither the DEK nor the vault private key in plaintext.
#  1. Two customer-key disks (their RSA key imported from a PEM we generate,
#     so we know the private key) get data; the daemon stops; dek_probe
#     recovers both DEKs from the state directory the way the engine does.
#  2. Daemon restarted (foreground, trace logging captured); hd is opened and
#     read. Positive control: memscan finds the 64-byte DEK in /proc/PID/mem
#     (so the probe and the scanner work); VmLck > 0.
#  2b. A marker pattern is written to hd and read back through the mount
#     (aligned and 512-byte I/O): no copy of it may stay in the daemon's
#     memory, idle or after the seal (positive control: memscan finds it in
#     a process holding it).
#  3. hd2 is opened (its DEK found), then closed: neither its DEK nor either
#     32-byte XTS half may remain (AES-256 key schedules start with the raw
#     key).
#  4. The key version is disabled: the watcher seals hd; I/O fails; memscan
#     finds neither the DEK nor a half, with a handle open and after close.
#  5. The log never shows the DEK (hex either case, base64) nor the private
#     key; no state file holds the raw DEK, its halves, the private key DER
#     or its prime factor.
# The non-dumpable flag is checked by non_dumpable.sh (no core dump), not
# here: on the CI kernel (6.18) root reads /proc/PID/mem of a non-dumpable
# process anyway.
# Usage: key_hygiene.sh CMKFS CMKCTL FSX CRASH_WRITER (dek_probe and memscan
# are found next to CRASH_WRITER).
# shellcheck source=tests/reliability/lib.sh
source "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || fail "jq is not installed"
TOOLS=$(dirname "$CRASH_WRITER_BIN")
DEK_PROBE=$TOOLS/dek_probe
MEMSCAN=$TOOLS/memscan
[[ -x "$DEK_PROBE" && -x "$MEMSCAN" ]] || fail "dek_probe/memscan not built next to $CRASH_WRITER_BIN"
# memscan tells an error (exit 2) from "found" (exit 1): a bad needle and a
# process it cannot read are errors.
for args in "$$ not-hex-not-hex-not-hex-not-hex" "2147483647 $(printf '%064d' 0)"; do
  rc=0
  # shellcheck disable=SC2086 # two words on purpose
  "$MEMSCAN" $args >/dev/null 2>&1 || rc=$?
  [[ $rc -eq 2 ]] || fail "memscan $args exited $rc, expected 2 (an error)"
done

CONF=$WORK/cmkfs.toml
cat >"$CONF" <<TOML
state_dir = "$STATE"
log_level = "trace"
[watcher]
poll_interval = "1s"
TOML
DLOG=$WORK/daemon.log
cmkctl() { timeout 120 "$CMKCTL_BIN" --config "$CONF" "$@"; }
# scan PID HEX...: memscan; returns 0 when no needle is in the process's
# memory, 1 when one is ($scan_out has the report); a scan error (exit 2, or
# memscan dying) fails the test: it is neither "found" nor "not found".
scan() {
  local rc=0
  scan_out=$("$MEMSCAN" "$@" 2>&1) || rc=$?
  case $rc in
    0 | 1) return $rc ;;
    *) fail "memscan $1 could not scan (exit $rc): $scan_out" ;;
  esac
}

log "setup: imported RSA key, DES, customer-key disk with data"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/k.pem" 2>/dev/null
openssl pkey -in "$WORK/k.pem" -outform DER -out "$WORK/k.der"
prime1=$(openssl rsa -in "$WORK/k.pem" -noout -text 2>/dev/null |
  awk '/^prime1:/{f=1;next} /^prime2:/{f=0} f' | tr -d ' :\n' | sed 's/^00//')
[[ ${#prime1} -ge 200 ]] || fail "could not read prime1 of the test key"
start_fg --log-level trace
cmkctl vault create hygv --purge-protection >/dev/null
kid=$(cmkctl key import hygv k --pem "$WORK/k.pem")
identity=$(cmkctl des create hdes --key-id cmk://hygv/keys/k)
cmkctl vault set-policy hygv --object-id "$identity" --key-permissions get wrapKey unwrapKey >/dev/null
cmkctl disk create hd --size 16M --des hdes >/dev/null
cmkctl disk create hd2 --size 16M --des hdes >/dev/null
head -c 8M /dev/urandom >"$WORK/data.bin"
dd if="$WORK/data.bin" of="$MNT/disks/hd" bs=1M conv=notrunc,fsync status=none
dd if="$WORK/data.bin" of="$MNT/disks/hd2" bs=1M conv=notrunc,fsync status=none
stop_fg
DEK2=$("$DEK_PROBE" "$STATE" disk hd2) || fail "dek_probe failed for hd2"
[[ ${#DEK2} -eq 128 ]] || fail "dek_probe printed ${#DEK2} hex digits for hd2"

DEK=$("$DEK_PROBE" "$STATE" disk hd) || fail "dek_probe failed"
[[ ${#DEK} -eq 128 ]] || fail "dek_probe printed ${#DEK} hex digits, expected 128"
H1=${DEK:0:64}
H2=${DEK:64:64}
log "DEK recovered (key $kid)"

start_fg --log-level trace
PID=$FG_PID
exec 3<"$MNT/disks/hd"
cmp -s <(head -c 8M <&3) "$WORK/data.bin" || fail "disk data differs after a restart"
scan "$PID" "$DEK" && fail "positive control: the live daemon's memory does not hold the DEK of an open disk (dek_probe or memscan is broken): $scan_out"
log "positive control: $(grep 'found' <<<"$scan_out")"
vmlck=$(awk '/^VmLck:/{print $2}' "/proc/$PID/status")
[[ ${vmlck:-0} -gt 0 ]] || fail "VmLck is ${vmlck:-0} kB with an open customer-key disk: key memory is not mlocked"
log "VmLck ${vmlck} kB"

log "plaintext: a marker pattern written to hd and read back through the mount"
# 4 MiB of one random 32-byte marker, written and read with O_DIRECT in whole
# MiB (the engine's aligned path) and in 512-byte blocks at odd sectors (its
# partial-sector path through the per-thread scratch), all through the FUSE
# request buffers. The daemon wipes each buffer after each request, so no
# copy may stay in its memory: not while the disk is open and idle, not
# after the seal (checked below).
MARK=$(openssl rand -hex 32)
python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.argv[1]) * 131072)' "$MARK" >"$WORK/marker.bin"
dd if="$WORK/marker.bin" of="$MNT/disks/hd" bs=1M seek=9 oflag=direct conv=notrunc,fsync status=none ||
  fail "cannot write the marker to hd"
dd if="$WORK/marker.bin" of="$MNT/disks/hd" bs=512 count=7 seek=$((14 * 2048 + 3)) oflag=direct conv=notrunc,fsync status=none ||
  fail "cannot write the marker to hd with unaligned 512-byte writes"
cmp -s <(dd if="$MNT/disks/hd" bs=1M skip=9 count=4 iflag=direct status=none) "$WORK/marker.bin" ||
  fail "the marker does not read back from hd"
cmp -s <(dd if="$MNT/disks/hd" bs=512 skip=$((14 * 2048 + 3)) count=7 iflag=direct status=none) <(head -c 3584 "$WORK/marker.bin") ||
  fail "the marker does not read back from hd with unaligned 512-byte reads"
# Positive control: memscan finds the marker in a process that holds it.
# The holder says when it holds the marker (a ready file): scanning it
# earlier may catch it inside exec(), with no mappings yet.
python3 -c 'import sys, time; m = bytes.fromhex(sys.argv[1]) * 4; open(sys.argv[2], "w").close(); time.sleep(30)' "$MARK" "$WORK/holder.ready" &
holder=$!
REL_CHILDREN+=("$holder")
for _ in $(seq 1 100); do
  [[ -e "$WORK/holder.ready" ]] && break
  kill -0 "$holder" 2>/dev/null || fail "the marker holder (pid $holder) died before it was ready"
  sleep 0.1
done
[[ -e "$WORK/holder.ready" ]] || fail "the marker holder (pid $holder) was not ready within 10 s"
found=0
rc=0
"$MEMSCAN" "$holder" "$MARK" >/dev/null || rc=$?
[[ $rc -eq 2 ]] && fail "memscan failed on the marker holder (pid $holder)"
[[ $rc -eq 1 ]] && found=1
kill "$holder" 2>/dev/null || true
[[ $found -eq 1 ]] || fail "positive control: memscan does not find the marker in a process holding it (pid $holder)"
# Scans the daemon for the marker; any copy fails with its mappings.
expect_no_marker() {
  local out rc=0
  out=$("$MEMSCAN" "$PID" "$MARK") || rc=$?
  [[ $rc -eq 2 ]] && { echo "$out" >&2; fail "memscan failed on the daemon ($1)"; }
  [[ $rc -eq 1 ]] && { echo "$out" >&2; fail "plaintext of hd (the marker) is in the daemon's memory $1"; }
  log "marker $1: $(tail -1 <<<"$out"), no plaintext"
}
expect_no_marker "with hd open and idle"

log "close: the last handle of hd2 closes, its DEK must go"
exec 4<"$MNT/disks/hd2"
cmp -s <(head -c 1M <&4) <(head -c 1M "$WORK/data.bin") || fail "hd2 data differs"
scan "$PID" "$DEK2" && fail "positive control: hd2's DEK is not in memory while hd2 is open"
exec 4<&-
sleep 0.5
scan "$PID" "$DEK2" "${DEK2:0:64}" "${DEK2:64:64}" || { echo "$scan_out" >&2; fail "hd2's DEK (or an XTS half) is still in the daemon's memory after its last handle closed"; }
log "after close of hd2: $(tail -1 <<<"$scan_out"), no DEK"

log "seal: disable the key version"
cmkctl key set-attributes hygv k --enabled false >/dev/null
deadline=$((SECONDS + 10))
while ((SECONDS < deadline)); do
  [[ "$(cmkctl disk show hd -o json | jq -r .state)" == sealed ]] && break
  sleep 0.2
done
[[ "$(cmkctl disk show hd -o json | jq -r .state)" == sealed ]] || fail "the disk did not seal within 10 s"
expect_no_marker "after the seal"
if dd bs=4096 count=1 skip=100 status=none <&3 >/dev/null 2>&1; then
  # The kernel page cache may still answer a read of cached pages; a direct
  # read must fail.
  dd if="$MNT/disks/hd" iflag=direct bs=4096 count=1 status=none of=/dev/null 2>/dev/null &&
    fail "the sealed disk still reads"
fi
sleep 0.5
scan "$PID" "$DEK" "$H1" "$H2" || { echo "$scan_out" >&2; fail "the DEK (or an XTS half) is still in the daemon's memory after the seal, with a handle open"; }
log "after seal, handle open: $(tail -1 <<<"$scan_out"), no DEK"
exec 3<&-
sleep 0.5
scan "$PID" "$DEK" "$H1" "$H2" || { echo "$scan_out" >&2; fail "the DEK is in the daemon's memory after the seal and close"; }
log "after close: no DEK"
scan "$PID" "$prime1" || { echo "$scan_out" >&2; fail "the vault private key (prime1) is in the daemon's memory after the seal and close"; }
log "after close: no vault private key (prime1)"

cmkctl key set-attributes hygv k --enabled true >/dev/null
stop_fg

log "logs and state files"
b64=$(xxd -r -p <<<"$DEK" | base64 -w0)
for needle in "$DEK" "${DEK^^}" "$H1" "$H2" "${H1^^}" "${H2^^}" "$b64" "$prime1" "${prime1,,}"; do
  grep -qF -- "$needle" "$DLOG" && fail "the daemon log holds key material (${needle:0:16}...)"
done
[[ -s "$DLOG" ]] || fail "the daemon log is empty: nothing was scanned"
log "daemon log ($(wc -l <"$DLOG") lines at trace level): no key material"
python3 - "$STATE" "$DEK" "$WORK/k.der" "$prime1" <<'PY' || fail "a state file holds key material in plaintext"
import os, sys
state, dek_hex, der_path, p_hex = sys.argv[1:5]
dek = bytes.fromhex(dek_hex)
der = open(der_path, "rb").read()
p = bytes.fromhex(p_hex if len(p_hex) % 2 == 0 else "0" + p_hex)
needles = {"DEK": dek, "DEK half 1": dek[:32], "DEK half 2": dek[32:],
           "private key DER": der, "prime1": p, "DEK hex": dek_hex.encode()}
bad = 0
files = 0
for root, _, names in os.walk(state):
    for n in names:
        path = os.path.join(root, n)
        if not os.path.isfile(path):
            continue
        files += 1
        data = open(path, "rb").read()
        for what, nd in needles.items():
            if nd in data:
                print(f"{path}: holds the {what}")
                bad += 1
print(f"scanned {files} state files")
sys.exit(1 if bad else 0)
PY
mode=$(stat -c %a "$STATE/vault.key")
[[ "$mode" == 600 ]] || fail "vault.key has mode $mode, expected 600"
