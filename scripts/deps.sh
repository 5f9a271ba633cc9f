#!/usr/bin/env bash
# Makes sure everything ringtls needs to build and test is installed.
# As root on Debian 12 it installs what is missing with apt-get; otherwise
# it prints the one command to run and fails.
#   scripts/deps.sh build   compiler, cmake, liburing, OpenSSL, libyaml, libsystemd, libnghttp2
#   scripts/deps.sh test    the above + test clients, clang/libFuzzer, linters
#   scripts/deps.sh bench   the above + nginx-light, wrk
set -euo pipefail

want=(gcc make cmake pkg-config liburing-dev libssl-dev libyaml-dev libsystemd-dev libnghttp2-dev openssl ca-certificates)
case "${1:-build}" in
  build) ;;
  test) want+=(curl python3 clang libclang-rt-14-dev gnutls-bin nodejs procps kmod patchelf iproute2 valgrind strace
              python3-websockets nginx-light libnginx-mod-stream # test_proxy*.py, test_upstream_tls.py upstreams
              logrotate util-linux # test_access_log.py: logrotate, prlimit, setpriv
              prometheus # promtool check metrics: tests/integration/test_metrics.py
              systemd # test_systemd.py: systemd-socket-activate, systemd-analyze
              nghttp2-client python3-h2 # test_h2*.py: nghttp, h2load; raw HTTP/2 frames
              chromium # test_h2_browser.py: headless Chromium loads the built-in page over h2
              git cppcheck clang-tidy clang-format pyflakes3 # these five: scripts/lint.sh
              libseccomp-dev # tests/integration/seccomp_run.c: test_seccomp.py's container-like filters
              docker.io debootstrap # tests/install/test_container.py: its own dockerd, a debian:12 image
              debhelper dpkg-dev lintian) ;; # tests/install/test_deb.sh (no fakeroot: Rules-Requires-Root: no)
  bench) want+=(curl python3 nginx-light haproxy wrk procps gnuplot-nox nghttp2-client h2o
               valgrind kmod patchelf iproute2) ;; # bench/ktls_count.sh: callgrind inside Linux 6.1
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "ringtls: missing packages; run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "ringtls: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
