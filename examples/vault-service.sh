#!/usr/bin/env bash
# Two trust domains: a key vault service (cmkvault, run by the vault owner,
# the customer) and a storage host (cmkfs, run by the platform operator), each
# with its own state directory and process, which trust each other only
# through credential files handed over:
#   1. the owner initialises cmkvault (CA, server certificate, owner's admin
#      credential) and serves it on loopback TCP; it issues the host's
#      identity and hands the host its credential file;
#   2. the owner creates a vault and a key; the host, in service mode,
#      creates a disk encryption set: its host identity asks cmkvault to mint
#      the set's identity (the key pair is made on the host, only the public
#      half travels) and keeps the credential; the owner grants that
#      identity get/wrapKey/unwrapKey;
#   3. the host creates and mounts a disk and writes to it;
#   4. the owner disables the key: the host's watcher hears it over the
#      WatchKeys stream and seals the disk; I/O on the open handle fails;
#   5. the owner's audit shows the host's calls with their certificate, and
#      its hash chain verifies.
# Environment: see examples/lib.sh; CMKVAULT is the cmkvault binary (default:
# next to cmkctl in the build tree, else /usr/bin/cmkvault).
set -euo pipefail
# shellcheck source=examples/lib.sh
source "$(dirname "$0")/lib.sh"

if [ -z "${CMKVAULT:-}" ]; then
  CMKVAULT=$(dirname "$(dirname "$CMKCTL")")/vault/cmkvault
  [ -x "$CMKVAULT" ] || CMKVAULT=/usr/bin/cmkvault
fi
[ -x "$CMKVAULT" ] || fail "$CMKVAULT is not an executable; build cmkvault or set CMKVAULT"

# --- the vault owner's side ------------------------------------------------
vault_state=$work/vault-owner/cmkvault
owner_dir=$work/vault-owner
owner_config=$owner_dir/cmkctl.toml
handover=$work/handover # what travels between the two parties: files only
mkdir -p "$owner_dir" "$handover"
chmod 0700 "$owner_dir" "$handover"
vault_pid=
vault_log=$work/cmkvault.log

stop_vault() {
  if [ -n "$vault_pid" ] && kill -0 "$vault_pid" 2>/dev/null; then
    kill -TERM "$vault_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$vault_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$vault_pid" 2>/dev/null || true
    wait "$vault_pid" 2>/dev/null || true
  fi
  vault_pid=
}
# A watchdog ends the walkthrough (through the EXIT trap below: unmount,
# vault stopped, work directory removed) before ctest's timeout would kill it
# without running any trap.
# Its output goes nowhere and its sleep ends with it, so that nothing holds
# the test's output open once the walkthrough is over.
(
  trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
  sleep "${CMKFS_EXAMPLE_TIMEOUT:-240}" &
  sleeper=$!
  wait "$sleeper" && kill -TERM $$
) >/dev/null 2>&1 </dev/null &
watchdog=$!
trap 'rc=$?; set +e; kill "$watchdog" 2>/dev/null; stop_vault; (exit "$rc"); cleanup_example' EXIT

vault() {
  echo "+ cmkvault $*" >&2
  "$CMKVAULT" --state-dir "$vault_state" "$@"
}
owner() {
  echo "+ cmkctl (owner) $*" >&2
  "$CMKCTL" --config "$owner_config" "$@"
}

step "Vault owner: initialise cmkvault and serve it on loopback"
vault init --admin-out "$owner_dir/admin.pem" >/dev/null
"$CMKVAULT" --state-dir "$vault_state" serve --listen 127.0.0.1:0 >"$vault_log" 2>&1 &
vault_pid=$!
endpoint=
for _ in $(seq 100); do
  endpoint=$(sed -n 's/^cmkvault: listening on \(127\.0\.0\.1:[0-9]*\)$/\1/p' "$vault_log" | head -n 1)
  [ -n "$endpoint" ] && break
  kill -0 "$vault_pid" 2>/dev/null || fail "cmkvault exited: $(cat "$vault_log")"
  sleep 0.1
done
[ -n "$endpoint" ] || fail "cmkvault did not listen within 10 s: $(cat "$vault_log")"
echo "cmkvault serves $endpoint"
cat >"$owner_config" <<TOML
state_dir = "$owner_dir/cmkctl-state"
[keystore]
service = "$endpoint"
credential = "$owner_dir/admin.pem"
TOML

step "Vault owner: issue the storage host's identity, hand over its credential"
host_id=$(vault identity issue storage-host --host --out "$handover/host.pem")
echo "host identity: $host_id"

# --- the storage host's side -------------------------------------------------
host_creds=$work/host-credentials
mkdir -p "$host_creds"
chmod 0700 "$host_creds"
install -m 0600 "$handover/host.pem" "$work/host.pem"
cat >>"$config" <<TOML
[keystore]
service = "$endpoint"
credential = "$work/host.pem"
credentials_dir = "$host_creds"
TOML

step "Vault owner: a vault and a key (the host gets no key permission)"
owner vault create cust-vault --purge-protection >/dev/null
owner key create cust-vault disk-key --size 2048

step "Storage host: a disk encryption set on the customer's key"
des_id=$(ctl des create cust-des --key-id cmk://cust-vault/keys/disk-key)
echo "DES identity: $des_id"

[ "$(stat -c %a "$host_creds/$des_id.pem")" = 600 ] ||
  fail "the DES credential $host_creds/$des_id.pem is missing or not 0600"
vault identity list | grep -q "^$des_id  client  active" ||
  fail "cmkvault does not list the minted DES identity as an active client"

step "Vault owner: grant the DES identity"
owner vault set-policy cust-vault --object-id "$des_id" --key-permissions get wrapKey unwrapKey >/dev/null

step "Storage host: the host's own credential cannot grant, read keys or re-enable"
if ctl vault set-policy cust-vault --object-id "$host_id" --key-permissions get wrapKey unwrapKey 2>"$work/deny.err"; then
  fail "the storage host granted itself key permissions"
fi
echo "refused: $(tail -n 1 "$work/deny.err")"
if ctl key show cust-vault disk-key 2>"$work/deny.err"; then
  fail "the storage host's identity read the customer's key"
fi
echo "refused: $(tail -n 1 "$work/deny.err")"

step "Storage host: create and mount a disk, write, keep a handle open"
tag=$RANDOM$RANDOM
disk=cust-disk
ctl disk create "$disk" --size 16M --des cust-des >/dev/null
mount_cmkfs
write_and_hold "$disk" "vault service $tag"

step "Vault owner: disable the key; the host's disk seals"
owner key set-attributes cust-vault disk-key --enabled false >/dev/null
start=$(date +%s%N)
wait_for_state "$disk" sealed 15
echo "sealed on the storage host $((($(date +%s%N) - start) / 1000000)) ms after the owner's call returned"
if dd bs=1M skip=8 count=1 status=none <&3 >/dev/null 2>"$work/read.err"; then
  fail "a read through the handle opened before sealing succeeded"
fi
echo "read on the open handle: $(head -n 1 "$work/read.err")"
exec 3>&-

step "Vault owner: the audit names the host's calls and its chain verifies"
audit=$(owner vault audit cust-vault -o json)
[ "$(jq -r '[.[] | select(.operation == "wrapKey")][0].identity' <<<"$audit")" = "$des_id" ] ||
  fail "the audit does not show the DES identity's wrapKey"
owner vault audit cust-vault --verify

unmount_cmkfs
stop_vault
echo
echo "vault-service: OK"
