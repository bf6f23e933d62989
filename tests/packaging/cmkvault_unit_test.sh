#!/usr/bin/env bash
# The shipped cmkvault unit passes `systemd-analyze verify` and its sandbox
# keeps `systemd-analyze security` at or under the documented exposure, both
# offline. Usage: cmkvault_unit_test.sh UNIT_FILE CMKVAULT_BINARY MAX_EXPOSURE
set -euo pipefail
unit=${1:?unit file}
cmkvault=${2:?cmkvault binary}
max=${3:?maximum exposure score}
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v systemd-analyze >/dev/null || fail "systemd-analyze is not installed (apt-get install systemd)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s#/usr/bin/cmkvault#$cmkvault#" "$unit" >"$tmp/cmkvault.service"
out=$(systemd-analyze verify --man=no "$tmp/cmkvault.service" 2>&1) ||
  fail "systemd-analyze verify failed: $out"
[[ -z "$out" ]] || fail "systemd-analyze verify warned: $out"
echo "verify: ok"
report=$(systemd-analyze security --offline=true "$tmp/cmkvault.service" 2>&1) ||
  fail "systemd-analyze security failed: $report"
score=$(sed -n 's/.*Overall exposure level for cmkvault.service: \([0-9.]*\).*/\1/p' <<<"$report")
[[ -n "$score" ]] || fail "no exposure score in: $report"
echo "exposure: $score (at most $max)"
awk -v s="$score" -v m="$max" 'BEGIN { exit !(s <= m) }' ||
  fail "exposure $score is over $max; the sandbox lost something:
$(grep '✗' <<<"$report")"
# The serve command is what the unit runs, and the keys stay out of dumps.
for line in 'ExecStart=/usr/bin/cmkvault --config /etc/cmkfs/cmkvault.toml serve' \
  StateDirectory=cmkvault StateDirectoryMode=0700 LimitCORE=0 NoNewPrivileges=yes \
  CapabilityBoundingSet=CAP_IPC_LOCK ProtectSystem=strict; do
  grep -qx "$line" "$unit" || fail "$unit lacks '$line'"
done
echo "PASS"
