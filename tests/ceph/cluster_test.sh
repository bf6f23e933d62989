#!/usr/bin/env bash
# ceph.cluster: brings up the throwaway test cluster of cluster.sh and checks,
# as client.cmkfs (not admin), what a user of it relies on: RBD images with
# the features cmkfs will use, data that reads back as written, snapshots and
# clones, a key confined to its pool; then that 'down' leaves nothing behind.
# The cluster is torn down from an EXIT trap whatever happens.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLUSTER=$HERE/cluster.sh
START=$SECONDS

DIR=$(mktemp -d "${TMPDIR:-/tmp}/cmkfs-ceph-test.XXXXXX")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cmkfs-ceph-work.XXXXXX")
cleanup() {
  timeout 30 bash "$CLUSTER" down "$DIR" >/dev/null 2>&1 || true
  rm -rf "$DIR" "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

PASSED=0
ok() {
  PASSED=$((PASSED + 1))
  echo "ok: $*"
}
fail() {
  echo "FAIL: $*" >&2
  echo "ceph.cluster: $PASSED passed, 1 failed" >&2
  exit 1
}

# --- up ---------------------------------------------------------------------
# CMKFS_CEPH_OWNER: should this script be killed without its trap running
# (SIGKILL, a ctest timeout), cluster.sh's watchdog tears the cluster down.
if ! out=$(CMKFS_CEPH_OWNER=$$ timeout 150 bash "$CLUSTER" up "$DIR"); then
  fail "cluster.sh up $DIR failed (its message is above)"
fi
want="cluster up: conf=$DIR/ceph.conf keyring=$DIR/client.cmkfs.keyring pool=cmkfs"
[ "$out" = "$want" ] || fail "cluster.sh up printed '$out', expected the one line '$want'"
ok "cluster up in $((SECONDS - START)) s: $out"

eval "$(bash "$CLUSTER" env "$DIR")"
if [ "$CEPH_CONF" != "$DIR/ceph.conf" ] || [ "$CEPH_ID" != cmkfs ] || [ "$CEPH_POOL" != cmkfs ] ||
  [ ! -f "$CEPH_KEYRING" ]; then
  fail "cluster.sh env gave CEPH_CONF=$CEPH_CONF CEPH_ID=$CEPH_ID CEPH_POOL=$CEPH_POOL CEPH_KEYRING=$CEPH_KEYRING"
fi

# The user's tools, as client.cmkfs; the admin's, for setup and cross-checks.
urbd() { timeout 30 rbd --conf "$CEPH_CONF" --id "$CEPH_ID" --keyring "$CEPH_KEYRING" "$@"; }
arbd() { timeout 30 rbd --conf "$CEPH_CONF" --id admin --keyring "$CEPH_ADMIN_KEYRING" "$@"; }
aceph() { timeout 30 ceph --conf "$CEPH_CONF" --id admin --keyring "$CEPH_ADMIN_KEYRING" "$@"; }
uceph() { timeout 30 ceph --conf "$CEPH_CONF" --id "$CEPH_ID" --keyring "$CEPH_KEYRING" "$@"; }

for p in "$DIR/mon.a.pid" "$DIR/osd.0.pid"; do
  if [ ! -s "$p" ] || ! kill -0 "$(cat "$p")" 2>/dev/null; then fail "$p does not name a running daemon"; fi
done
port=$(sed -n 's/^mon host = \[v2:127\.0\.0\.1:\([0-9]*\)\]$/\1/p' "$CEPH_CONF")
[ -n "$port" ] || fail "no v2 mon address on 127.0.0.1 in $CEPH_CONF"
pool=$(aceph osd pool ls detail) || fail "ceph osd pool ls detail failed"
[[ $pool == *"'cmkfs' replicated size 1 min_size 1 "*"application rbd"* ]] ||
  fail "pool cmkfs is not replicated size 1 / min_size 1 with application rbd: $pool"
caps=$(aceph auth get client.cmkfs 2>/dev/null) || fail "ceph auth get client.cmkfs failed"
[[ $caps == *'caps mon = "profile rbd"'* && $caps == *'caps osd = "profile rbd pool=cmkfs"'* ]] ||
  fail "client.cmkfs does not have the caps mon 'profile rbd' osd 'profile rbd pool=cmkfs': $caps"
ok "mon on 127.0.0.1:$port, osd.0 up, pool cmkfs size 1, client.cmkfs caps profile rbd pool=cmkfs"

# --- images -----------------------------------------------------------------
FEATURES=layering,exclusive-lock,object-map,fast-diff,deep-flatten
urbd create --size 16M --image-format 2 --image-feature "$FEATURES" cmkfs/empty ||
  fail "client.cmkfs could not create a format 2 image with features $FEATURES"
info=$(urbd info --format json cmkfs/empty | tr -d ' \n') || fail "rbd info cmkfs/empty failed"
[[ $info == *'"format":2'* ]] || fail "cmkfs/empty is not format 2: $info"
for f in ${FEATURES//,/ }; do
  [[ $info == *"\"$f\""* ]] || fail "cmkfs/empty lacks feature $f: $info"
done
urbd export cmkfs/empty "$WORK/empty.out" >/dev/null 2>&1 || fail "rbd export cmkfs/empty failed"
[ "$(sha256sum <"$WORK/empty.out")" = "$(head -c 16M /dev/zero | sha256sum)" ] ||
  fail "a new 16 MiB image did not read back as 16 MiB of zeros"
ok "format 2 image with $FEATURES created; a new image reads as zeros"

head -c 4M /dev/urandom >"$WORK/data"
sum=$(sha256sum <"$WORK/data")
urbd import --image-format 2 --image-feature "$FEATURES" "$WORK/data" cmkfs/disk0 >/dev/null 2>&1 ||
  fail "rbd import of 4 MiB into cmkfs/disk0 failed"
urbd export cmkfs/disk0 "$WORK/disk0.out" >/dev/null 2>&1 || fail "rbd export cmkfs/disk0 failed"
[ "$(sha256sum <"$WORK/disk0.out")" = "$sum" ] ||
  fail "cmkfs/disk0 read back differs from the 4 MiB written (sha256 $(sha256sum <"$WORK/disk0.out") != $sum)"
du=$(urbd du --format json cmkfs/disk0 | tr -d ' \n') || fail "rbd du cmkfs/disk0 failed"
[[ $du == *'"provisioned_size":4194304'* ]] || fail "rbd du (fast-diff) of cmkfs/disk0 does not show 4 MiB: $du"
ok "4 MiB of random data imported and exported back identical (sha256 ${sum%% *})"

# --- snapshot, protect, clone -------------------------------------------------
urbd snap create cmkfs/disk0@s1 >/dev/null 2>&1 || fail "rbd snap create cmkfs/disk0@s1 failed"
urbd snap protect cmkfs/disk0@s1 || fail "rbd snap protect cmkfs/disk0@s1 failed"
urbd clone cmkfs/disk0@s1 cmkfs/clone0 || fail "rbd clone cmkfs/disk0@s1 cmkfs/clone0 failed"
# Overwrite the parent's first MiB after the snapshot: the clone must keep
# reading the snapshot's data, the parent its new data.
urbd bench --io-type write --io-size 64K --io-total 1M --io-pattern seq cmkfs/disk0 >/dev/null 2>&1 ||
  fail "rbd bench write to cmkfs/disk0 failed"
urbd export cmkfs/clone0 "$WORK/clone0.out" >/dev/null 2>&1 || fail "rbd export cmkfs/clone0 failed"
[ "$(sha256sum <"$WORK/clone0.out")" = "$sum" ] ||
  fail "the clone cmkfs/clone0 does not read its parent snapshot's data"
urbd export cmkfs/disk0 "$WORK/disk0.after" >/dev/null 2>&1 || fail "rbd export cmkfs/disk0 failed"
[ "$(sha256sum <"$WORK/disk0.after")" != "$sum" ] ||
  fail "writing to cmkfs/disk0 after the snapshot did not change what it reads"
urbd snap unprotect cmkfs/disk0@s1 >/dev/null 2>&1 &&
  fail "unprotecting a snapshot that has a clone succeeded"
ok "snapshot protected and cloned; the clone reads the snapshot's data after the parent changed"

# --- the key is confined to its pool ---------------------------------------
aceph osd pool create other 8 8 replicated >/dev/null 2>&1 || fail "admin could not create pool other"
arbd pool init other || fail "admin could not rbd pool init other"
arbd create --size 8M other/admins >/dev/null 2>&1 || fail "admin could not create an image in pool other"
if err=$(urbd create --size 8M other/intruder 2>&1); then
  fail "client.cmkfs created an image in pool other, outside its caps"
fi
[[ $err == *"Operation not permitted"* || $err == *"permission"* ]] ||
  fail "client.cmkfs's create in pool other failed, but not for lack of permission: $err"
urbd ls other >/dev/null 2>&1 && fail "client.cmkfs listed the images of pool other"
uceph osd pool create cmkfs-evil 8 >/dev/null 2>&1 && fail "client.cmkfs could create a pool"
ok "client.cmkfs cannot create or list images in pool other, nor create pools"

# --- down leaves nothing ------------------------------------------------------
bash "$CLUSTER" down "$DIR" || fail "cluster.sh down $DIR failed"
left=
for d in /proc/[0-9]*; do
  cmd=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline") || continue
  [[ $cmd == *"$DIR/ceph.conf"* ]] && left+="${d#/proc/}: $cmd; "
done
[ -z "$left" ] || fail "ceph processes of $DIR still run after down: $left"
rest=$(find "$DIR" -mindepth 1 -printf '%P ')
[ -z "$rest" ] || fail "$DIR is not empty after down: $rest"
hexport=$(printf '%04X' "$port")
if awk -v p=":$hexport" '$2 ~ p"$" && $4 == "0A" {found=1} END {exit !found}' /proc/net/tcp /proc/net/tcp6; then
  fail "port $port still listens after down"
fi
bash "$CLUSTER" down "$DIR" || fail "a second cluster.sh down $DIR failed (it must be idempotent)"
ok "down: no process left, $DIR empty, port $port closed, a second down succeeds"

echo "ceph.cluster: $PASSED passed, 0 failed in $((SECONDS - START)) s"
