#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into DIR and runs each for SECS.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:?usage: fuzz.sh DIR [SECS]}
secs=${2:-60}
if ! command -v clang >/dev/null; then
  echo "fuzz: clang is not installed (scripts/deps.sh test installs it)"; exit 77
fi
CC=clang cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRTLS_FUZZ=ON \
  -DRTLS_OUTER_TESTS=OFF -DBUILD_TESTING=OFF >/dev/null
cmake --build "$dir" -j"$(nproc)" --target fuzz_parser >/dev/null
mkdir -p "$dir/corpus-parser"
# New inputs go to the scratch corpus; the seeds in fuzz/corpus stay as committed.
"$dir/fuzz/fuzz_parser" -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 \
  "$dir/corpus-parser" "$src/fuzz/corpus/parser" 2>&1 | tail -n 15
