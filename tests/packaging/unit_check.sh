# shellcheck shell=bash
# Sourced by the unit tests: `check_unit UNIT INSTALLED_BINARY BUILD_BINARY
# MAX_EXPOSURE` runs `systemd-analyze verify` (with the unit's ExecStart
# binary pointed at this build's) and `systemd-analyze security`, both
# offline, fails on a warning or an exposure over MAX_EXPOSURE, and leaves the
# security report in $report.
fail() { echo "FAIL: $*" >&2; exit 1; }
check_unit() {
  local unit=$1 installed=$2 binary=$3 max=$4 name score
  name=$(basename "$unit")
  command -v systemd-analyze >/dev/null || fail "systemd-analyze is not installed (apt-get install systemd)"
  check_unit_tmp=$(mktemp -d)
  trap 'rm -rf "$check_unit_tmp"' EXIT
  # verify checks that ExecStart's binary exists: point it at this build's.
  sed "s#$installed#$binary#" "$unit" >"$check_unit_tmp/$name"
  local out
  out=$(systemd-analyze verify --man=no "$check_unit_tmp/$name" 2>&1) ||
    fail "systemd-analyze verify failed: $out"
  [[ -z "$out" ]] || fail "systemd-analyze verify warned: $out"
  echo "verify: ok"
  report=$(systemd-analyze security --offline=true "$check_unit_tmp/$name" 2>&1) ||
    fail "systemd-analyze security failed: $report"
  score=$(sed -n "s/.*Overall exposure level for $name: \([0-9.]*\).*/\1/p" <<<"$report")
  [[ -n "$score" ]] || fail "no exposure score in: $report"
  echo "exposure: $score (at most $max)"
  awk -v s="$score" -v m="$max" 'BEGIN { exit !(s <= m) }' ||
    fail "exposure $score is over $max; the sandbox lost something:
$(grep '✗' <<<"$report")"
}
