#!/usr/bin/env bash
# Prometheus metrics end to end (docs/metrics.md): the daemon serves them on
# a free loopback port; a known amount of O_DIRECT I/O through the mount
# shows up exactly in the per-disk byte/op counters and the open-handle
# gauge; the scrape passes `promtool check metrics`; disabling the key shows
# the disk sealed with the reason; every metric the Grafana dashboard queries
# is in the scrape; the unix-socket form works; a port in use and a bad
# [metrics] listen value are one-line start-up errors.
set -euo pipefail
e2e_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${CMKFS_TEST_REAPER:?set CMKFS_TEST_REAPER to the cmkfs_test_reaper binary}"
# shellcheck source=examples/lib.sh
source "$e2e_dir/../../examples/lib.sh"
dashboard=$repo_dir/examples/grafana-cmkfs.json
for tool in curl promtool jq python3; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done

helper=""  # the process holding the disk open
holder=""  # the process holding a port
stop_helpers() {
  local p
  for p in $helper $holder; do kill "$p" 2>/dev/null; done
  return 0
}
trap 'rc=$?; stop_helpers; (exit $rc); cleanup_example' EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
base_config=$(cat "$config")
set_listen() { printf '%s\n[metrics]\nlisten = "%s"\n' "$base_config" "$1" >"$config"; }
scrape() { curl -fsS --max-time 5 "http://127.0.0.1:$port/metrics"; }
# value SERIES: the value of one exact series (name{labels}) in $work/scrape.
value() { awk -v s="$1" '$1 == s { print $2; found = 1 } END { exit !found }' "$work/scrape" ||
  fail "no series $1 in the scrape"; }
expect() { # SERIES WANT
  local got
  got=$(value "$1")
  [ "$got" = "$2" ] || fail "$1 is $got, expected $2"
  echo "ok: $1 = $2"
}
# The port is free when chosen; another test taking it before cmkfs binds
# it would fail this one with "Address already in use" (not seen so far:
# the kernel hands out ephemeral ports round-robin).
start_on_free_port() {
  port=$(free_port)
  set_listen "127.0.0.1:$port"
  mount_cmkfs
}
stop_cmkfs() {
  local pid
  pid=$(cat "$state/cmkfs.pid")
  kill -TERM "$pid"
  for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
  alive "$pid" && fail "cmkfs (pid $pid) did not exit after SIGTERM"
  unmount_cmkfs
}

step "a bad [metrics] listen value is a one-line error naming the key"
printf '%s\n[metrics]\nlisten = "127.0.0.1:99999"\n' "$base_config" >"$work/bad.toml"
rc=0
"$CMKFS" --config "$work/bad.toml" "$mnt" 2>"$work/bad.err" || rc=$?
[ "$rc" = 1 ] || fail "cmkfs exited $rc with a bad listen value, expected 1"
[ "$(wc -l <"$work/bad.err")" = 1 ] || fail "expected one line, got: $(cat "$work/bad.err")"
grep -qF "key 'metrics.listen': '127.0.0.1:99999' has a bad port; expected \"HOST:PORT\"" "$work/bad.err" ||
  fail "unexpected error: $(cat "$work/bad.err")"
cat "$work/bad.err"
in_mount_table "$mnt" && fail "cmkfs mounted $mnt despite the bad config"

step "vault, key, disk encryption set and disk"
ctl vault create mvault --purge-protection >/dev/null
ctl key create mvault k --size 2048 >/dev/null
identity=$(ctl des create mdes --key-id cmk://mvault/keys/k)
ctl vault set-policy mvault --object-id "$identity" \
  --key-permissions get wrapKey unwrapKey >/dev/null
ctl disk create mdisk --size 64M --des mdes >/dev/null

step "a port in use is a start-up error and leaves nothing mounted"
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True); time.sleep(60)' >"$work/holder.port" &
holder=$!
for _ in $(seq 50); do [ -s "$work/holder.port" ] && break; sleep 0.1; done
taken=$(cat "$work/holder.port")
[ -n "$taken" ] || fail "the port holder did not start"
set_listen "127.0.0.1:$taken"
rc=0
"$CMKFS" --config "$config" "$mnt" 2>"$work/busy.err" || rc=$?
kill "$holder" 2>/dev/null || true
holder=""
cat "$work/busy.err"
[ "$rc" = 1 ] || fail "cmkfs exited $rc on a port in use, expected 1"
grep -qxF "cmkfs: metrics: cannot listen on 127.0.0.1:$taken: Address already in use" "$work/busy.err" ||
  fail "unexpected error: $(cat "$work/busy.err")"
in_mount_table "$mnt" && fail "$mnt is still mounted after the failed start"

step "mount with metrics on a free port; the first scrape is valid"
start_on_free_port
scrape >"$work/scrape"
promtool check metrics <"$work/scrape" || fail "promtool refused the scrape"
grep -qE '^cmkfs_build_info\{version="[0-9]+\.[0-9]+\.[0-9]+",git_commit="([0-9a-f]+|unknown)"\} 1$' "$work/scrape" ||
  fail "no build info: $(grep build_info "$work/scrape")"
expect 'cmkfs_resource_sealed{kind="disk",name="mdisk",reason=""}' 0
expect 'cmkfs_open_handles{kind="disk",name="mdisk"}' 0
expect 'cmkfs_des_resources{des="mdes"}' 1
expect 'cmkfs_des_resources_rewrapped{des="mdes"}' 1
[ "$(value cmkfs_pool_capacity_bytes)" -gt 0 ] || fail "pool capacity is 0"

step "known I/O through the mount: 16 x 64 KiB writes, fsync, 8 x 64 KiB reads"
file=$mnt/disks/mdisk
python3 - "$file" "$work" <<'PY' &
import mmap, os, sys, time
path, work = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 65536)
buf.write(b"m" * 65536)
for i in range(16):
    assert os.pwritev(fd, [buf], i * 65536) == 65536
os.fsync(fd)
for i in range(8):
    assert os.preadv(fd, [buf], i * 65536) == 65536
second = os.open(path, os.O_RDONLY)
open(os.path.join(work, "ready"), "w").close()
for _ in range(300):  # until the test says go, 30 s at most
    if os.path.exists(os.path.join(work, "go")):
        break
    time.sleep(0.1)
os.close(second)
os.close(fd)
PY
helper=$!
for _ in $(seq 100); do [ -e "$work/ready" ] && break; sleep 0.1; done
[ -e "$work/ready" ] || fail "the I/O helper did not get ready"
scrape >"$work/scrape"
promtool check metrics <"$work/scrape" || fail "promtool refused the scrape"
d='kind="disk",name="mdisk"'
expect "cmkfs_io_bytes_total{$d,op=\"write\"}" 1048576
expect "cmkfs_io_operations_total{$d,op=\"write\"}" 16
expect "cmkfs_io_bytes_total{$d,op=\"read\"}" 524288
expect "cmkfs_io_operations_total{$d,op=\"read\"}" 8
expect "cmkfs_io_operations_total{$d,op=\"flush\"}" 1
expect "cmkfs_io_latency_seconds_count{$d,op=\"write\"}" 16
expect "cmkfs_io_latency_seconds_count{$d,op=\"read\"}" 8
expect "cmkfs_io_errors_total{$d,op=\"write\"}" 0
expect "cmkfs_io_errors_total{$d,op=\"read\"}" 0
expect "cmkfs_open_handles{$d}" 2
[ "$(value 'cmkfs_keystore_unwrap_duration_seconds_count')" -ge 1 ] ||
  fail "opening the disk unwrapped no DEK"
[ "$(value "cmkfs_resource_allocated_bytes{$d}")" -ge 1048576 ] ||
  fail "1 MiB written but less allocated"
touch "$work/go"
wait "$helper" || fail "the I/O helper failed"
helper=""
for _ in $(seq 50); do
  scrape >"$work/scrape"
  [ "$(value "cmkfs_open_handles{$d}")" = 0 ] && break
  sleep 0.1
done
expect "cmkfs_open_handles{$d}" 0

step "every metric the Grafana dashboard queries is in the scrape"
jq empty "$dashboard" || fail "$dashboard is not valid JSON"
queried=$(jq -r '.. | objects | (.expr?, .query?, .definition?) // empty | strings' "$dashboard" |
  grep -o 'cmkfs_[a-z0-9_]*' | sort -u)
[ -n "$queried" ] || fail "the dashboard queries no cmkfs metric"
for m in $queried; do
  base=${m%_bucket}
  base=${base%_sum}
  base=${base%_count}
  grep -q "^# TYPE $m " "$work/scrape" || grep -q "^# TYPE $base histogram$" "$work/scrape" ||
    fail "the dashboard queries $m, which the daemon does not export"
done
echo "ok: $(wc -w <<<"$queried") metrics of the dashboard exported"

step "no key material in a scrape: the vault master key in hex or base64"
[ -s "$state/vault.key" ] || fail "no vault master key at $state/vault.key"
key_hex=$(xxd -p -c 256 "$state/vault.key")
key_b64=$(base64 -w0 "$state/vault.key")
for secret in "$key_hex" "$key_b64"; do
  grep -qiF -- "$secret" "$work/scrape" && fail "the scrape contains the vault master key"
done
echo "ok: the master key is in no scrape"

step "disable the key: the disk shows sealed with the reason"
ctl key set-attributes mvault k --enabled false >/dev/null
wait_for_state mdisk sealed 15
reason=$(ctl_quiet disk show mdisk -o json | jq -r '.seal_reason')
[[ "$reason" == "key cmk://mvault/keys/k/"*" unusable: key version disabled" ]] ||
  fail "unexpected seal reason '$reason'"
scrape >"$work/scrape"
promtool check metrics <"$work/scrape" || fail "promtool refused the scrape"
grep -qxF "cmkfs_resource_sealed{$d,reason=\"$reason\"} 1" "$work/scrape" ||
  fail "the scrape does not show mdisk sealed with '$reason': $(grep cmkfs_resource_sealed "$work/scrape")"
echo "ok: cmkfs_resource_sealed{$d,reason=\"$reason\"} 1"
[ "$(value cmkfs_watcher_seals_total)" -ge 1 ] || fail "no seal counted"
[ "$(value cmkfs_watcher_seal_latency_seconds_count)" -ge 1 ] || fail "no seal latency observed"
[ "$(value cmkfs_watcher_poll_duration_seconds_count)" -ge 1 ] || fail "no poll observed"
ctl key set-attributes mvault k --enabled true >/dev/null
wait_for_state mdisk active 15
scrape >"$work/scrape"
expect 'cmkfs_resource_sealed{kind="disk",name="mdisk",reason=""}' 0
stop_cmkfs

step "the same over a unix socket (mode 0600, removed at exit)"
sock=$work/metrics.sock
set_listen "unix:$sock"
mount_cmkfs
[ "$(stat -c %a "$sock")" = 600 ] || fail "$sock has mode $(stat -c %a "$sock"), expected 600"
curl -fsS --max-time 5 --unix-socket "$sock" http://localhost/metrics >"$work/scrape"
promtool check metrics <"$work/scrape" || fail "promtool refused the unix-socket scrape"
expect 'cmkfs_des_resources{des="mdes"}' 1
stop_cmkfs
[ -e "$sock" ] && fail "$sock is left behind after the daemon stopped"
echo "PASS"
