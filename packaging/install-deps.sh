#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of cmkfs from Debian 12
# packages. Idempotent: prints nothing and touches nothing when all are there.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake pkg-config ccache git python3
  libfuse3-dev libssl-dev liblmdb-dev libtomlplusplus-dev libspdlog-dev libfmt-dev
  libgtest-dev libp11-kit-dev clang-format clang libclang-rt-14-dev
  # runtime
  fuse3 openssl lmdb-utils
  # tests: real QEMU tools, fio, loop devices and ext4, a real PKCS#11 token
  qemu-utils fio e2fsprogs util-linux kmod procps psmisc xxd jq
  # a real guest for the QEMU example: Debian's kernel and a busybox initramfs
  qemu-system-x86 linux-image-amd64 busybox-static cpio
  libvirt-clients libxml2-utils systemd man-db libvirt-daemon-system libvirt-daemon-driver-qemu
  softhsm2 opensc
  # key custody (#18): TPM 2.0 (swtpm, tpm2-tss ESAPI), NSS softokn as a native
  # OAEP-SHA256 token, p11-kit server/client for remote tokens
  swtpm swtpm-tools tpm2-tools libtss2-dev p11-kit libnss3 libnss3-tools
  # packaging checks
  dpkg-dev rpm file
  # benchmark peers
  gocryptfs bindfs cryptsetup-bin
  # Prometheus metrics: the HTTP library, promtool and curl for the scrape tests
  libcpp-httplib-dev prometheus curl
  # cmkctl: JSON library (-o json/tsv); bash completion (its CI test sources the script)
  nlohmann-json3-dev bash-completion
  # cmkvault, the vault service: gRPC + protobuf (library, protoc and its C++ gRPC plugin)
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  # the Ceph backend (#19): a single-node cluster for the tests, librbd/librados to build against
  ceph-mon ceph-osd ceph-common librbd-dev librados-dev libradospp-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run this script as root (or with sudo)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
