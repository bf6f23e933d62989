#!/usr/bin/env bash
# Builds the .rpm from a build tree and checks its file list, file modes and
# flags, dependencies and scriptlets with rpm -qp, then unpacks it into a
# scratch root (rpm --root, no scripts: this is a Debian host) to check what
# lands on disk.
#
#   rpm_package_test.sh BUILD_DIR PROJECT_VERSION
set -euo pipefail
build=${1:?usage: rpm_package_test.sh BUILD_DIR PROJECT_VERSION}
version=${2:?usage: rpm_package_test.sh BUILD_DIR PROJECT_VERSION}
build=$(cd "$build" && pwd)

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
step() { printf '\n== %s\n' "$*"; }

tmp=$(mktemp -d /var/tmp/cmkfs-rpm-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

step "cpack -G RPM in $build"
(cd "$build" && cpack --config CPackConfig.cmake -G RPM -B "$tmp/pkg") >"$tmp/cpack.log" 2>&1 ||
  { tail -n 30 "$tmp/cpack.log" >&2; fail "cpack -G RPM failed"; }
grep -q 'CPackRPM:Warning' "$tmp/cpack.log" && { grep -A2 'CPackRPM:Warning' "$tmp/cpack.log" >&2; fail "cpack warned"; }
rpm=$tmp/pkg/cmkfs-$version-1.x86_64.rpm
[ -f "$rpm" ] || fail "expected $rpm; cpack made: $(ls "$tmp/pkg")"

rpmq() { rpm -qp "$@" "$rpm" 2>/dev/null; }

step "rpm -qpi"
rpmq -i | sed -n '1,12p'
[ "$(rpmq --qf '%{NAME} %{VERSION} %{LICENSE}')" = "cmkfs $version Apache-2.0" ] ||
  fail "name/version/license: $(rpmq --qf '%{NAME} %{VERSION} %{LICENSE}')"

step "rpm -qlp"
files=$(rpmq -l)
echo "$files"
for f in /usr/bin/cmkfs /usr/bin/cmkctl /usr/sbin/mount.fuse.cmkfs /etc/cmkfs/cmkfs.toml /usr/lib/systemd/system/cmkfs.service /usr/lib/systemd/system/cmkvault.service /usr/bin/cmkvault /usr/share/man/man8/cmkvault.8.gz \
  /usr/share/man/man8/cmkfs.8.gz /usr/share/man/man8/cmkctl.8.gz /var/lib/cmkfs \
  /usr/lib/cmkfs/cmkfs-metrics-http.so \
  /usr/share/bash-completion/completions/cmkctl /usr/share/bash-completion/completions/cmkfs; do
  grep -qx "$f" <<<"$files" || fail "rpm -qlp does not list $f"
done
# Directories of the base system must stay owned by the filesystem package.
for d in / /etc /etc/default /lib /usr /usr/bin /usr/sbin /usr/lib /usr/lib/systemd /usr/lib/systemd/system \
  /usr/share /usr/share/man /usr/share/man/man8 /var /var/lib \
  /usr/share/bash-completion /usr/share/bash-completion/completions; do
  grep -qx "$d" <<<"$files" && fail "the package owns the system directory $d"
done

step "file modes and flags"
flags=$(rpmq --qf '[%{FILEFLAGS:fflags}|%{FILEMODES:perms}|%{FILEUSERNAME}|%{FILENAMES}\n]')
echo "$flags"
grep -qx 'cn|-rw-r--r--|root|/etc/cmkfs/cmkfs.toml' <<<"$flags" ||
  fail "/etc/cmkfs/cmkfs.toml is not %config(noreplace) 0644 root"
grep -qx '|drwx------|root|/var/lib/cmkfs' <<<"$flags" || fail "/var/lib/cmkfs is not a 0700 root directory"
grep -qx '|-rw-r--r--|root|/usr/lib/systemd/system/cmkfs.service' <<<"$flags" ||
  fail "the unit is not a plain 0644 file (a unit must not be %config)"
grep -qx '|-rwxr-xr-x|root|/usr/bin/cmkfs' <<<"$flags" || fail "/usr/bin/cmkfs is not 0755 root"

step "rpm -qpR"
requires=$(rpmq -R)
echo "$requires"
for r in fuse3 fuse3-libs 'openssl-libs >= 3.0' lmdb-libs 'libfuse3.so.3()(64bit)' 'libcrypto.so.3()(64bit)' \
  'liblmdb.so.0()(64bit)'; do
  grep -qxF "$r" <<<"$requires" || fail "rpm -qpR lacks '$r'"
done

step "scriptlets"
scripts=$(rpmq --scripts)
grep -q 'install -d -m 0700 -o root -g root /var/lib/cmkfs' <<<"$scripts" || fail "%post does not create /var/lib/cmkfs 0700"
grep -q 'systemctl stop cmkfs.service' <<<"$scripts" || fail "%preun does not stop the service"

step "unpack into a scratch root"
out=$(rpm --root "$tmp/root" --dbpath /rpmdb -i --nodeps --noscripts --nosignature "$rpm" 2>&1) ||
  fail "rpm -i into a scratch root failed: $out"
# rpm warns that it is not the native package manager here; show the rest.
sed '/RPM should not be used directly/d; /assuming you know what you are doing/d' <<<"$out"
[ "$(stat -c '%a' "$tmp/root/var/lib/cmkfs")" = 700 ] || fail "unpacked /var/lib/cmkfs is not 0700"
for b in cmkfs cmkctl; do [ -x "$tmp/root/usr/bin/$b" ] || fail "unpacked /usr/bin/$b is missing"; done
cmp "$tmp/root/etc/cmkfs/cmkfs.toml" "$(dirname "$0")/../../packaging/cmkfs.toml" ||
  fail "unpacked cmkfs.toml differs from packaging/cmkfs.toml"
"$tmp/root/usr/bin/cmkfs" --version | grep -qx "cmkfs $version" || fail "the packaged cmkfs does not run"
echo
echo "rpm package test: OK"
