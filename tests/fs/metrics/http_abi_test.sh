#!/usr/bin/env bash
# cmkfs never links cpp-httplib: Debian's libcpp-httplib's load-time
# initialisation allocates through OpenSSL (libssl) before core/crypto.cc
# installs its wiping allocator, which OpenSSL then refuses. (libssl itself
# comes in with gRPC, whose loading leaves the allocator installed:
# vault.ServiceModeLinking.GrpcAndLibsslLeaveTheWipingAllocatorInstalled.) The library lives in
# the dlopened module cmkfs-metrics-http.so, which is compiled without
# CPPHTTPLIB_OPENSSL_SUPPORT against a library built with it (see
# http_module.cc): the layouts differ only in httplib::Request, so the module
# must define no code of httplib::Request (the shared library could bind a
# definition of ours in place of its own) and reference no OpenSSL symbol.
# Usage: http_abi_test.sh CMKFS_BINARY MODULE
set -euo pipefail
cmkfs=${1:?path to cmkfs}
module=${2:?path to cmkfs-metrics-http.so}
fail() { echo "FAIL: $*" >&2; exit 1; }
needed=$(readelf -d "$cmkfs" | grep NEEDED)
grep -q 'libcrypto' <<<"$needed" || fail "$cmkfs does not link libcrypto: not cmkfs?"
if grep -E 'libcpp-httplib' <<<"$needed"; then
  fail "$cmkfs links cpp-httplib at load time"
fi
symbols=$(nm -C --defined-only "$module")
# The check can fail: httplib code is compiled into the module.
grep -q 'httplib::ThreadPool' <<<"$symbols" ||
  fail "no httplib code found in $module: not the metrics module?"
request=$(grep -E ' [TtWwVvu] httplib::Request::' <<<"$symbols" || true)
[ -z "$request" ] || fail "$module defines httplib::Request code: $request"
ssl=$(nm -u "$module" | grep -E ' (SSL_|SSL_CTX_|EVP_|OPENSSL_|ERR_|X509_)' || true)
[ -z "$ssl" ] || fail "$module references OpenSSL: $ssl"
exported=$(nm -D --defined-only "$module" | awk '{print $3}' | grep cmkfs_ | sort | tr '\n' ' ')
[ "$exported" = "cmkfs_metrics_http_start cmkfs_metrics_http_stop " ] ||
  fail "$module exports '$exported', expected only the two entry points"
echo "PASS: cmkfs does not link cpp-httplib; $module defines no httplib::Request code and references no OpenSSL"
