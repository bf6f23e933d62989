#!/usr/bin/env bash
# examples/libvirt-domain.xml: valid against libvirt's domain schema
# (virt-xml-validate, from libvirt-clients), and its disk is the cmkfs disk with
# the settings examples/qemu-boot.sh gives QEMU.
set -euo pipefail
examples=$(cd "$(dirname "$0")/../../examples" && pwd)
xml=$examples/libvirt-domain.xml
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

virt-xml-validate "$xml" domain || fail "virt-xml-validate rejects $xml"

attr() { xmllint --xpath "string($1)" "$xml"; }
disk="/domain/devices/disk[@device='disk']"
[ "$(attr "$disk/@type")" = file ] || fail "the disk is not type='file'"
[ "$(attr "$disk/driver/@type")" = raw ] || fail "the disk format is not raw"
[ "$(attr "$disk/driver/@cache")" = none ] || fail "the disk is not cache='none'"
case "$(attr "$disk/driver/@io")" in native | io_uring) ;; *) fail "the disk io is not native or io_uring" ;; esac
[ "$(attr "$disk/driver/@discard")" = unmap ] || fail "the disk is not discard='unmap'"
[ "$(attr "$disk/target/@bus")" = virtio ] || fail "the disk is not on the virtio bus"
[[ "$(attr "$disk/source/@file")" == /srv/cmkfs/disks/* ]] || fail "the disk source is not under /srv/cmkfs/disks/"
[ "$(attr "$disk/source/seclabel/@relabel")" = no ] || fail "the DAC driver would chown the cmkfs file"

# The same settings as the QEMU walkthrough.
# shellcheck disable=SC2016 # the script's text, $aio included
grep -q 'format=raw,if=virtio,cache=none,aio=$aio,discard=unmap' "$examples/qemu-boot.sh" ||
  fail "examples/qemu-boot.sh no longer uses the drive settings of the domain XML"
echo "libvirt domain XML: OK"
