#!/usr/bin/env bash
# Builds the whole project with ASan+UBSan into DIR and runs its suite.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:?usage: sanitize.sh DIR}
cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DRTLS_SANITIZE=ON -DRTLS_OUTER_TESTS=OFF >/dev/null
cmake --build "$dir" -j"$(nproc)" >/dev/null
# Leaks fail the run; halt on the first UBSan report too.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=23
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
cd "$dir"
# The kernel tests run once, in the outer build: ASan's shadow memory does
# not fit User-Mode Linux's address space.
ctest --output-on-failure --timeout 600 -E '^(epoll\.)?kernel\.'
