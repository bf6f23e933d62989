#!/usr/bin/env bash
# The main job on the embedded default: installs what is needed, builds, then
# creates a local vault, an RSA key, a disk encryption set and a 1 GiB demo
# disk under one state directory, and mounts it. Run again to start afresh.
#
#   CMKFS_DEMO_DIR   where the demo lives (default /var/tmp/cmkfs-demo)
#   CMKFS_BIN_DIR    use already-built binaries from here (skips the build)
set -euo pipefail
cd "$(dirname "$0")/.."
demo=${CMKFS_DEMO_DIR:-/var/tmp/cmkfs-demo}
state=$demo/state
mnt=$demo/mnt

if [ -z "${CMKFS_BIN_DIR:-}" ]; then
  packaging/install-deps.sh
  # build/: release, tests off (tests/run-all.sh turns them on in the same
  # tree; the configure lines of both are in tests/ci-trees.sh).
  # shellcheck source=tests/ci-trees.sh
  source tests/ci-trees.sh
  cmkfs_configure_quickstart build
  cmake --build build -j"$(nproc)" --target cmkfs cmkctl >/dev/null
  bin=$PWD/build
  cmkfs=$bin/fs/daemon/cmkfs
  cmkctl=$bin/cli/cmkctl
else
  cmkfs=$CMKFS_BIN_DIR/cmkfs
  cmkctl=$CMKFS_BIN_DIR/cmkctl
fi

# Start afresh: unmount a previous demo and remove its state.
if findmnt -rn --mountpoint "$mnt" >/dev/null 2>&1; then
  fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt"
  for _ in $(seq 50); do findmnt -rn --mountpoint "$mnt" >/dev/null 2>&1 || break; sleep 0.1; done
fi
rm -rf "$demo"
mkdir -p "$state" "$mnt"

ctl() { "$cmkctl" --state-dir "$state" "$@"; }
"$cmkfs" --version
ctl vault create demo-vault --purge-protection >/dev/null
key_id=$(ctl key create demo-vault demo-key --size 3072)
identity=$(ctl des create demo-des --key-id "cmk://demo-vault/keys/demo-key")
ctl vault set-policy demo-vault --object-id "$identity" --key-permissions get wrapKey unwrapKey >/dev/null
ctl disk create demo --size 1G --des demo-des >/dev/null
"$cmkfs" --state-dir "$state" "$mnt"

echo
echo "cmkfs demo is up."
echo "  key:        $key_id"
echo "  DES:        demo-des (identity $identity)"
echo "  disk file:  $mnt/disks/demo"
ls -l "$mnt/disks"
echo
echo "Next:"
echo "  $cmkctl --state-dir $state disk show demo"
echo "  qemu-img info -f raw $mnt/disks/demo"
echo "  qemu-system-x86_64 -drive file=$mnt/disks/demo,format=raw,if=virtio,cache=none,aio=native,discard=unmap ..."
echo "  $cmkctl --state-dir $state key set-attributes demo-vault demo-key --enabled false   # seals the disk"
echo "  fusermount3 -u $mnt                                           # unmount"
