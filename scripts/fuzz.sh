#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/<target>.c) with clang into DIR, then
# for each target: replays fuzz/regressions/<target>/ (each input once),
# and fuzzes for SECS seconds from fuzz/corpus/<target>/. New inputs go to
# a scratch corpus, DIR/corpus/<target>; the committed directories are only
# read. Exits 1 on any crash, 77 without clang.
#
#   scripts/fuzz.sh DIR [SECS] [TARGET...]    SECS: default 60; 0: build and
#                                             replay the regressions only
#   FUZZ_NO_BUILD=1 scripts/fuzz.sh ...       use what DIR already holds
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:?usage: fuzz.sh DIR [SECS] [TARGET...]}
secs=${2:-60}
shift $(($# < 2 ? $# : 2))
all=(parser response proxy_header http_fields tls_records tls_control tls_handshake config h2)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

if ! command -v clang >/dev/null; then
  echo "fuzz: clang is not installed (scripts/deps.sh test installs it)"; exit 77
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
bin=$dir/fuzz
# Every target, configured once; ctest runs one entry per target, maybe
# in parallel: the first builds, the others wait on the lock and find
# everything up to date.
build() {
  if [ ! -f "$dir/CMakeCache.txt" ]; then
    CC=clang cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRTLS_FUZZ=ON \
      -DRTLS_OUTER_TESTS=OFF -DBUILD_TESTING=OFF || return 1
  fi
  cmake --build "$dir" -j"$(nproc)" --target "${all[@]/#/fuzz_}"
}
if [ "${FUZZ_NO_BUILD:-0}" != 1 ]; then
  if ! (flock 9 && build) 9>"$dir/.build.lock" >"$dir/build.log" 2>&1; then
    tail -n 30 "$dir/build.log"
    echo "fuzz: build failed (log: $dir/build.log)"; exit 1
  fi
fi

# libFuzzer's own failure code is 77, which ctest would read as SKIP.
opts=(-error_exitcode=1 -timeout_exitcode=1 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)

# Prints where the crashing input is and how to keep it as a regression.
report_crash() {
  local t=$1 log=$2 art
  art=$(ls -t "$dir/crashes/$t"/{crash,leak,timeout,oom,slow-unit}-* 2>/dev/null | head -n 1)
  grep -E "ERROR|SUMMARY|#[0-9]+ 0x.* in .*\.c:" "$log" | head -n 8
  if grep -q "^Running: " "$log"; then
    echo "fuzz $t: FAILED on $(sed -n 's/^Running: //p' "$log" | tail -n 1)"
    echo "  reproduce: $bin/fuzz_$t $(sed -n 's/^Running: //p' "$log" | tail -n 1)"
  elif [ -n "$art" ]; then
    echo "fuzz $t: FAILED; input: $art"
    echo "  reproduce: $bin/fuzz_$t $art"
    echo "  keep it:   cp $art $src/fuzz/regressions/$t/<what-it-pins>"
  else
    echo "fuzz $t: FAILED (log: $log)"
  fi
}

stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -n 1; }

fail=0
for t in "${targets[@]}"; do
  exe=$bin/fuzz_$t
  if [ ! -x "$exe" ]; then
    echo "fuzz $t: FAILED: no binary $exe"; fail=1; continue
  fi
  mkdir -p "$dir/corpus/$t" "$dir/crashes/$t" "$dir/logs"
  log=$dir/logs/$t.log
  regs=("$src/fuzz/regressions/$t"/*)
  nregs=0
  if [ -e "${regs[0]}" ]; then
    nregs=${#regs[@]}
    if ! (cd "$dir/crashes/$t" && "$exe" "${opts[@]}" -artifact_prefix="$dir/crashes/$t/" \
          "${regs[@]}") >"$log" 2>&1; then
      echo "fuzz $t: a regression input fails"; report_crash "$t" "$log"; fail=1; continue
    fi
  fi
  if [ "$secs" = 0 ]; then
    echo "fuzz $t: ok, $nregs regression inputs replayed"; continue
  fi
  seeds=$(ls "$src/fuzz/corpus/$t" 2>/dev/null | wc -l)
  if ! (cd "$dir/crashes/$t" && "$exe" "${opts[@]}" -artifact_prefix="$dir/crashes/$t/" \
        -max_total_time="$secs" "$dir/corpus/$t" "$src/fuzz/corpus/$t") >"$log" 2>&1; then
    report_crash "$t" "$log"; fail=1; continue
  fi
  printf 'fuzz %s: ok, %s runs in %ss (%s/s), %s new inputs, scratch corpus %s, %s seeds, %s regressions\n' \
    "$t" "$(stat number_of_executed_units "$log")" "$secs" "$(stat average_exec_per_sec "$log")" \
    "$(stat new_units_added "$log")" "$(ls "$dir/corpus/$t" | wc -l)" "$seeds" "$nregs"
done
exit $fail
