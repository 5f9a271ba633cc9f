#!/usr/bin/env bash
# The Debian packages, built and used the way README.md says (issue 19).
#
#   tests/install/test_deb.sh [WORK_DIR]
#
# Copies the source tree (git's tracked and untracked-but-not-ignored
# files) into WORK_DIR/src, runs `dpkg-buildpackage -us -uc -b` there,
# and lintian on the .changes (no error, no warning). Then, with nothing
# but the three .debs unpacked into WORK_DIR/root (dpkg-deb -x, no root
# needed): `ringtls --version` says the version of debian/changelog and
# of CMakeLists.txt, `ringtls probe` exits 0 with its io_uring line, and
# librtls.so.0, the headers, ringtls.pc (prefix /usr) and the man pages
# are where the packages put them. Last, `debian/rules clean` leaves the
# copy as it was. WORK_DIR (default: a new temporary folder) is emptied
# first and kept afterwards, for a look at the logs.
# Exit 0 pass, 1 fail, 77 skip (packaging tools not installed).
set -uo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${1:-$(mktemp -d /tmp/rtls-deb.XXXXXX)}
start=$SECONDS

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }

for t in dpkg-buildpackage dpkg-deb dpkg-checkbuilddeps dh lintian readelf pkg-config; do
  command -v "$t" >/dev/null || skip "$t not installed (scripts/deps.sh test)"
done

rm -rf "$WORK"
mkdir -p "$WORK/src" "$WORK/root" || fail "cannot make $WORK"
WORK=$(cd "$WORK" && pwd)

# The copy: what a fresh clone would hold, with this tree's edits. Not
# obj-*/ (what a package build here left behind), nor tracked files that
# are deleted in the work tree.
copy_tree() {
  if git -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$SRC" && git ls-files -z -co --exclude-standard |
      while IFS= read -r -d '' f; do
        case $f in obj-*/*) continue ;; esac
        [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"
      done | tar -c --null -T - -f -) | tar -x -C "$WORK/src"
  else
    (cd "$SRC" && tar -c --exclude='./build*' --exclude=./.git --exclude='./obj-*' -f - .) |
      tar -x -C "$WORK/src"
  fi
}
copy_tree || fail "cannot copy $SRC to $WORK/src"
cd "$WORK/src" || fail "no $WORK/src"
[ -f debian/control ] || fail "no debian/control in the copy"
find . \( -type f -o -type l \) | sort >"$WORK/before.txt"

dpkg-checkbuilddeps >"$WORK/builddeps.log" 2>&1 ||
  skip "$(tail -1 "$WORK/builddeps.log") (scripts/deps.sh test)"

version=$(dpkg-parsechangelog -S Version)
upstream=${version%-*}
arch=$(dpkg --print-architecture)
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
cmake_version=$(sed -n 's/^project(ringtls VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
[ "$cmake_version" = "$upstream" ] ||
  fail "debian/changelog says $upstream, CMakeLists.txt says ${cmake_version:-nothing}"

# The documented command.
echo "dpkg-buildpackage -us -uc -b in $WORK/src"
if ! DEB_BUILD_OPTIONS=parallel=2 dpkg-buildpackage -us -uc -b >"$WORK/build.log" 2>&1; then
  tail -40 "$WORK/build.log" >&2
  fail "dpkg-buildpackage (log: $WORK/build.log)"
fi
echo "built in $((SECONDS - start)) s"

changes="$WORK/ringtls_${version}_${arch}.changes"
[ -f "$changes" ] || fail "no $changes"
lintian --fail-on error,warning --display-info "$changes" >"$WORK/lintian.log" 2>&1
lrc=$?
grep -v '^running with root privileges' "$WORK/lintian.log"
[ $lrc -eq 0 ] || fail "lintian: errors or warnings (above)"
echo "lintian: no errors, no warnings"

for p in ringtls librtls0 librtls-dev; do
  deb="$WORK/${p}_${version}_${arch}.deb"
  [ -f "$deb" ] || fail "no $deb"
  dpkg-deb -x "$deb" "$WORK/root" || fail "dpkg-deb -x $deb"
done

R=$WORK/root
LIB=$R/usr/lib/$ma
BIN=$R/usr/bin/ringtls
[ -x "$BIN" ] || fail "no usr/bin/ringtls in the ringtls package"
# If the program ever links librtls.so.0, it gets the packaged one.
export LD_LIBRARY_PATH=$LIB

out=$("$BIN" --version 2>&1) || fail "ringtls --version exited $?: $out"
[ "$out" = "ringtls $upstream" ] || fail "ringtls --version printed '$out', not 'ringtls $upstream'"
echo "ringtls --version: $out"

out=$("$BIN" probe 2>&1) || fail "ringtls probe exited $?: $out"
echo "$out" | grep -q '^io_uring:' || fail "ringtls probe printed no io_uring line: $out"
echo "ringtls probe: $(echo "$out" | grep '^io_uring:')"

[ -f "$LIB/librtls.so.0" ] || fail "no usr/lib/$ma/librtls.so.0 in librtls0"
soname=$(readelf -d "$LIB/librtls.so.0" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = librtls.so.0 ] || fail "librtls.so.0's soname is '$soname'"
[ "$(readlink "$LIB/librtls.so")" = librtls.so.0 ] || fail "librtls.so is not a link to librtls.so.0"
[ -f "$LIB/librtls.a" ] || fail "no librtls.a in librtls-dev"
for h in ringtls.h tls.h; do
  [ -f "$R/usr/include/ringtls/$h" ] || fail "no usr/include/ringtls/$h in librtls-dev"
done

pc=$LIB/pkgconfig/ringtls.pc
[ -f "$pc" ] || fail "no usr/lib/$ma/pkgconfig/ringtls.pc in librtls-dev"
grep -qx 'prefix=/usr' "$pc" || fail "ringtls.pc: $(grep '^prefix=' "$pc"), not prefix=/usr"
libdir=$(PKG_CONFIG_PATH="$LIB/pkgconfig" pkg-config --variable=libdir ringtls)
[ "$libdir" = "/usr/lib/$ma" ] || fail "ringtls.pc's libdir is '$libdir', not /usr/lib/$ma"
pcv=$(PKG_CONFIG_PATH="$LIB/pkgconfig" pkg-config --modversion ringtls)
[ "$pcv" = "$upstream" ] || fail "ringtls.pc's version is '$pcv'"

ex=$R/usr/share/doc/ringtls/examples/ringtls.yaml
[ -f "$ex" ] || [ -f "$ex.gz" ] || fail "no usr/share/doc/ringtls/examples/ringtls.yaml in ringtls"
# The systemd unit, naming the packaged program (dist/systemd).
unit=$R/lib/systemd/system/ringtls.service
[ -f "$unit" ] || fail "no lib/systemd/system/ringtls.service in ringtls"
grep -q '^ExecStart=/usr/bin/ringtls serve ' "$unit" || fail "ringtls.service: $(grep '^ExecStart=' "$unit")"
[ -f "$R/usr/share/doc/ringtls/examples/ringtls.socket" ] ||
  fail "no usr/share/doc/ringtls/examples/ringtls.socket in ringtls"

for m in man1/ringtls.1 man7/librtls.7 man3/rtls_server_create.3; do
  [ -f "$R/usr/share/man/$m.gz" ] || fail "no usr/share/man/$m.gz"
done
# Alias pages (.so) become links to the page they name.
for m in "$SRC"/man/*.3; do
  n=$(basename "$m")
  [ -e "$R/usr/share/man/man3/$n.gz" ] || fail "no usr/share/man/man3/$n.gz (man/$n)"
done

# debian/rules clean: the copy as it was before the build.
debian/rules clean >"$WORK/clean.log" 2>&1 || fail "debian/rules clean (log: $WORK/clean.log)"
find . \( -type f -o -type l \) | sort >"$WORK/after.txt"
diff -u "$WORK/before.txt" "$WORK/after.txt" >&2 || fail "debian/rules clean left the files above"

echo "PASS ($((SECONDS - start)) s; work dir $WORK)"
exit 0
