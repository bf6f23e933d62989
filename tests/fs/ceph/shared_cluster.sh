#!/usr/bin/env bash
# One Ceph test cluster for all the ceph.* RBD test processes of one ctest
# run (tests/fs/ceph/CMakeLists.txt): ctest runs `up` first and `down` last.
#
#   shared_cluster.sh up BASE     cluster.sh up BASE/cluster; BASE/state says
#                                 "ok PID" or "failed PID <cluster.sh's line>"
#   shared_cluster.sh down BASE   cluster.sh down BASE/cluster; BASE/state goes
#
# PID is the caller's parent, ctest: a test process attaches to the cluster
# only when BASE/state names its own parent (so a state left by another run
# is never used), and a state "failed" makes it fail with the reason. The
# cluster's watchdog (CMKFS_CEPH_OWNER) tears it down once ctest has gone,
# should `down` never run (a ctest interrupted, or a run that filtered it out).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLUSTER=$HERE/../../ceph/cluster.sh
[ $# -eq 2 ] || { echo "usage: shared_cluster.sh up|down BASE" >&2; exit 2; }
base=$2
owner=$PPID

case $1 in
  up)
    mkdir -p "$base"
    timeout -k 2 60 bash "$CLUSTER" down "$base/cluster" >/dev/null 2>&1 || true
    rm -rf "$base/cluster" "$base/state"
    if out=$(CMKFS_CEPH_OWNER=$owner timeout -k 5 150 bash "$CLUSTER" up "$base/cluster" 2>&1); then
      echo "ok $owner" >"$base/state"
      echo "$out"
      exit 0
    fi
    reason=$(grep -m1 '^cluster.sh:' <<<"$out" || true)
    [ -n "$reason" ] || reason="cluster.sh up failed with no message"
    echo "failed $owner $reason" >"$base/state"
    echo "$out" >&2
    exit 1
    ;;
  down)
    rm -f "$base/state"
    [ -d "$base/cluster" ] || exit 0
    timeout -k 2 60 bash "$CLUSTER" down "$base/cluster"
    ;;
  *)
    echo "usage: shared_cluster.sh up|down BASE" >&2
    exit 2
    ;;
esac
