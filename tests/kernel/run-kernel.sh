#!/usr/bin/env bash
# run-kernel.sh: run one command inside a Linux kernel that has kernel TLS,
# on a machine whose own kernel may not.
#
#   tests/kernel/run-kernel.sh [--kernel 6.1|7.2] [--mem SIZE] [--timeout S] -- CMD...
#
# How: User-Mode Linux (Debian's user-mode-linux package) runs a real kernel
# as an ordinary process, no /dev/kvm needed. Its root file system is this
# machine's / (hostfs), so the build and every client binary are visible at
# the same paths. The guest has its own network stack; only loopback exists.
# The tls module and the AEAD ciphers are loaded before CMD runs as root in
# the current directory with the caller's exported environment.
#
#   6.1  Debian 12's package: kTLS TX/RX, TLS 1.2/1.3, AES-GCM, ChaCha20;
#        no TLS 1.3 rekey (a second TLS_TX/TLS_RX setsockopt fails)
#   7.2  Debian unstable's package: all that, plus KeyUpdate rekey (6.14+)
#
# Exit status: CMD's; 77 when no kernel could be fetched (tests SKIP);
# 124 when the guest did not finish in time.
#
# What we learned building this (see also docs/DESIGN.md, "Kernel tests"):
#  - unstable's linux.uml needs a newer glibc than Debian 12's: we unpack
#    unstable's libc6 beside it and patchelf its interpreter and rpath.
#    Running it through that ld.so instead makes UML misjudge its memory
#    layout and panic.
#  - modules load with `modprobe -d DIR` from a tree depmod -b built; the
#    kernel's own module requests (ciphers) go through a wrapper script
#    installed as /proc/sys/kernel/modprobe.
#  - every guest syscall is trapped: ~100x slower than the host. Prove
#    behaviour there; never time anything.
set -euo pipefail

kernel=6.1 mem=768M timeout_s=900
while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) kernel=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "run-kernel: no command (see --help)" >&2; exit 2; }

cache=${RINGTLS_KERNEL_CACHE:-/var/cache/ringtls-kernels}
skip() { echo "run-kernel: SKIP: $*" >&2; exit 77; }
mkdir -p "$cache" 2>/dev/null || skip "cannot create $cache"

for tool in depmod modprobe patchelf dpkg-deb apt-get; do
  command -v "$tool" >/dev/null || PATH=$PATH:/sbin:/usr/sbin
  command -v "$tool" >/dev/null || skip "$tool is missing (scripts/deps.sh test installs it)"
done

# The Debian mirror this machine already uses, so nothing here names one.
mirror() {
  local uri
  uri=$(sed -n 's/^URIs: *\([^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
  [ -n "$uri" ] || uri=$(sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*\/debian\) .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -1)
  echo "$uri"
}

# fetch SUITE DEST PKG...: download and unpack packages from SUITE ("" = the
# machine's own suites) into DEST.
fetch() {
  local suite=$1 dest=$2; shift 2
  local state="$cache/apt-${suite:-system}" opts=()
  mkdir -p "$state/lists/partial" "$state/archives/partial" "$dest"
  if [ -n "$suite" ]; then
    local m; m=$(mirror)
    [ -n "$m" ] || skip "no Debian mirror in this machine's apt sources"
    echo "deb $m $suite main" > "$state/sources.list"
    opts=(-o Dir::Etc::SourceList="$state/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o Dir::State::Lists="$state/lists" -o Dir::Cache="$state")
    apt-get "${opts[@]}" -q update >/dev/null 2>&1 || skip "apt-get update for $suite failed"
  fi
  ( cd "$state/archives" && apt-get "${opts[@]}" -q download "$@" >/dev/null 2>&1 ) ||
    { [ -z "$suite" ] && apt-get -q update >/dev/null 2>&1 &&
      ( cd "$state/archives" && apt-get -q download "$@" >/dev/null 2>&1 ); } ||
    skip "cannot download $* ${suite:+from $suite}"
  local p
  for p in "$@"; do dpkg-deb -x "$(ls -t "$state/archives/${p}"_*.deb | head -1)" "$dest"; done
}

# Suites run in parallel (ctest -j): one at a time fetches, unpacks and
# prepares the cache; the others wait here, then find it ready.
exec 8>"$cache/.prepare.lock"
flock 8
case "$kernel" in
  6.1)
    root="$cache/uml-6.1"
    [ -x "$root/usr/bin/linux.uml" ] || fetch "" "$root" user-mode-linux
    uml="$root/usr/bin/linux.uml" ;;
  7.2)
    root="$cache/uml-sid"
    [ -x "$root/usr/bin/linux.uml" ] || fetch sid "$root" user-mode-linux libc6
    uml="$root/linux.uml"
    if [ ! -x "$uml" ]; then
      cp "$root/usr/bin/linux.uml" "$uml.tmp"
      patchelf --set-interpreter "$root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
               --set-rpath "$root/usr/lib/x86_64-linux-gnu" "$uml.tmp"
      mv "$uml.tmp" "$uml"
    fi ;;
  *) echo "run-kernel: --kernel must be 6.1 or 7.2" >&2; exit 2 ;;
esac

kver=$(ls "$root/usr/lib/uml/modules" | head -1)
mods="$cache/modules-$kver"
if [ ! -f "$mods/lib/modules/$kver/modules.dep" ]; then
  mkdir -p "$mods/lib/modules"
  ln -sfn "$root/usr/lib/uml/modules/$kver" "$mods/lib/modules/$kver"
  depmod -b "$mods" "$kver"
fi
flock -u 8
exec 8>&-

run=$(mktemp -d /tmp/ringtls-kernel.XXXXXX)
trap 'rm -rf "$run"' EXIT
export -p | grep -v -E '^declare -[a-z]*x[a-z]* (BASHOPTS|SHELLOPTS|BASH_[A-Z_]*|EUID|UID|PPID|SHLVL|_)=' > "$run/env" || true
printf '%q ' "$@" > "$run/cmd"
modprobe_bin=$(command -v modprobe)
ip_bin=$(command -v ip || echo /sbin/ip)
cat > "$run/init" <<INIT
#!/bin/bash
mount -t proc proc /proc
mount -t sysfs sys /sys 2>/dev/null
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs shm /dev/shm 2>/dev/null
printf '#!/bin/sh\nexec $modprobe_bin -d "$mods" "\$@"\n' > "$run/modprobe"
chmod +x "$run/modprobe"
echo "$run/modprobe" > /proc/sys/kernel/modprobe
for m in tls gcm ccm chacha20poly1305 ghash-generic ctr; do
  $modprobe_bin -q -d "$mods" \$m 2>/dev/null
done
$ip_bin link set lo up
ulimit -n 65536 2>/dev/null
. "$run/env"
cd "$PWD"
bash -c "\$(cat "$run/cmd")" </dev/null
echo \$? > "$run/status"
sync
/sbin/halt -f 2>/dev/null || halt -f
INIT
chmod +x "$run/init"

set +e
timeout "$timeout_s" "$uml" mem="$mem" root=/dev/root rootfstype=hostfs rootflags=/ rw \
  init="$run/init" con=null con0=fd:0,fd:1 quiet </dev/null 2>&1 |
  grep -v -E '^(<[0-9]>|reboot: System halted|Halting\.|SELinux:|mmapper_init|Failed to initialize ubd|Checking|Core dump|	(soft|hard) -|Adding .* bytes to physical|Kernel virtual memory size)'
rc=${PIPESTATUS[0]}
set -e
[ "$rc" = 124 ] && { echo "run-kernel: the guest did not finish within ${timeout_s}s" >&2; exit 124; }
[ -f "$run/status" ] || { echo "run-kernel: the guest ended without a status (exit $rc)" >&2; exit 125; }
exit "$(cat "$run/status")"
