#!/usr/bin/env bash
# cmkfs_metrics is compiled without CPPHTTPLIB_OPENSSL_SUPPORT against
# Debian's libcpp-httplib, which is built with it (see http_server.cc). The
# layouts differ only in httplib::Request, so the library must define no
# code of httplib::Request (a definition of ours could be bound by the
# shared library in place of its own), and it must reference no OpenSSL
# symbol (only core/ uses OpenSSL). Usage: http_abi_test.sh LIBCMKFS_METRICS.a
set -euo pipefail
lib=${1:?path to libcmkfs_metrics.a}
fail() { echo "FAIL: $*" >&2; exit 1; }
symbols=$(nm -C --defined-only "$lib")
# The check can fail: httplib code is compiled into this library.
grep -q 'httplib::ThreadPool' <<<"$symbols" ||
  fail "no httplib code found in $lib: not the metrics library?"
request=$(grep -E ' [TtWwVvu] httplib::Request::' <<<"$symbols" || true)
[ -z "$request" ] || fail "$lib defines httplib::Request code: $request"
ssl=$(nm -u "$lib" | grep -E ' (SSL_|SSL_CTX_|EVP_|OPENSSL_|ERR_|X509_)' || true)
[ -z "$ssl" ] || fail "$lib references OpenSSL: $ssl"
echo "PASS: no httplib::Request definition, no OpenSSL reference in $lib"
