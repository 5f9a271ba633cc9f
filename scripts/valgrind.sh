#!/usr/bin/env bash
# Runs the integration tests (tests/integration/test_*.py) with every
# ringtls they start under valgrind's memcheck, then reads every valgrind
# log. Fails when a test fails, when any log reports an error or a
# definitely lost block, when a run never reached its exit-time report
# (killed), or when no log was written at all. Exits 77 without valgrind.
#
#   scripts/valgrind.sh BUILD_DIR [TEST...]
#     BUILD_DIR   a built tree (ringtls, echo, tests/no_uring, tests/seccomp_run);
#                 the logs and each test's output go to BUILD_DIR/valgrind/
#     TEST        test file names (test_http_basic); default: all
#     VALGRIND_JOBS=N   tests run N at a time (default 3: under memcheck
#                       a test spends much of its time waiting on the
#                       server, and two at a time left a quarter of two
#                       cores idle; three took 421 s where two took 600)
#     VALGRIND_SKIP="test_a test_b"   test files left out of the default
#                       set (named TESTs still run)
#
# The tests see RINGTLS_WRAP (the valgrind command, put in front of ringtls
# by tests/integration/rtls_test.py), RTLS_TIME_SCALE (their bounds on
# waits, times this) and RTLS_UNDER_VALGRIND=1 (a few shrink or skip parts
# that cannot be meaningful under valgrind). Tests are run directly, not by
# a nested ctest, which would share the outer ctest's files in BUILD_DIR.
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:?usage: valgrind.sh BUILD_DIR [TEST...]}
shift
if ! command -v valgrind >/dev/null; then
  echo "valgrind: not installed (scripts/deps.sh test installs it)"; exit 77
fi
dir=$(cd "$dir" && pwd)
[ -x "$dir/ringtls" ] || { echo "valgrind: no $dir/ringtls: build first"; exit 1; }
# One directory per backend: the epoll pass (RINGTLS_BACKEND=epoll) keeps
# its own logs and timings beside the default pass's.
logs=$dir/valgrind${RINGTLS_BACKEND:+-$RINGTLS_BACKEND}
prev=$(cat "$logs"/*.rc 2>/dev/null) # "NAME STATUS SECONDS" from the last run
rm -rf "$logs"
mkdir -p "$logs"
chmod 1777 "$logs" # some tests start ringtls as nobody (setpriv)

tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  for f in "$src"/tests/integration/test_*.py; do
    n=$(basename "$f" .py)
    case " ${VALGRIND_SKIP:-} " in *" $n "*) echo "  left out: $n (VALGRIND_SKIP)"; continue ;; esac
    tests+=("$n")
  done
fi
# Longest first (as the last run timed them; new ones first of all), so
# that the two slots end together.
mapfile -t tests < <(for n in "${tests[@]}"; do
  secs=$(awk -v n="$n" '$1 == n { print $3 }' <<<"$prev")
  echo "${secs:-100000} $n"
done | sort -k1,1nr -k2 | awk '{ print $2 }')

# Only definite leaks count: OpenSSL keeps its global state (providers,
# error strings) until exit on purpose, which memcheck calls "still
# reachable". --track-fds=no: the tests check descriptors themselves.
wrap=(valgrind --tool=memcheck --error-exitcode=99 --leak-check=full
      --errors-for-leak-kinds=definite --show-leak-kinds=definite
      --track-fds=no --num-callers=30 --suppressions="$src/tests/valgrind.supp"
      --log-file="$logs/vg.%p.log")
export RINGTLS_WRAP="${wrap[*]}"
export RTLS_TIME_SCALE=${RTLS_TIME_SCALE:-10}
export RTLS_UNDER_VALGRIND=1
export RINGTLS_BIN=$dir/ringtls ECHO_BIN=$dir/echo NO_URING_BIN=$dir/tests/no_uring SECCOMP_RUN_BIN=$dir/tests/seccomp_run HOLD_BIN=$dir/tests/hold FORWARD_BIN=$dir/forward KU_CLIENT_BIN=$dir/tests/ku_client

# One test file: its output to LOGS/NAME.out, "NAME STATUS SECONDS" to
# LOGS/NAME.rc. Bounded like a ctest entry.
run_one() {
  local name=$1 t0 rc
  t0=$(date +%s)
  timeout -k 10 900 python3 "$src/tests/integration/$name.py" >"$logs/$name.out" 2>&1
  rc=$?
  echo "$name $rc $(( $(date +%s) - t0 ))" >"$logs/$name.rc"
  case $rc in
    0) echo "  ok    $name ($(( $(date +%s) - t0 )) s)" ;;
    77) echo "  skip  $name: $(grep -m1 SKIP "$logs/$name.out")" ;;
    *) echo "  FAIL  $name (exit $rc)" ;;
  esac
}
export -f run_one
export src logs

start=$(date +%s)
printf '%s\n' "${tests[@]}" | xargs -P "${VALGRIND_JOBS:-3}" -I{} bash -c 'run_one "$1"' _ {}
secs=$(( $(date +%s) - start ))

failed=()
for name in "${tests[@]}"; do
  read -r _ rc _ <"$logs/$name.rc" 2>/dev/null || rc=missing
  if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
    failed+=("$name")
    echo "==== $name (exit $rc): $logs/$name.out"
    tail -n 60 "$logs/$name.out"
  fi
done

shopt -s nullglob
all=("$logs"/vg.*.log)
runs=${#all[@]} errors=0 leaked=0 unfinished=0 bad=()
for log in "${all[@]}"; do
  # "ERROR SUMMARY: N errors" and "definitely lost: N bytes" are written
  # at exit (no "definitely lost" line when nothing leaked); a log without
  # the summary is a run that never got there.
  e=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$log" | tail -n 1 | tr -d ,)
  d=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tail -n 1 | tr -d ,)
  if [ -z "$e" ]; then
    unfinished=$((unfinished + 1)); bad+=("$log"); continue
  fi
  errors=$((errors + e))
  leaked=$((leaked + ${d:-0}))
  if [ "$e" != 0 ] || [ "${d:-0}" != 0 ]; then bad+=("$log"); fi
done
for log in "${bad[@]}"; do
  echo "==== $log"
  cat "$log"
done

summary="valgrind: ${#tests[@]} test files, $runs ringtls runs, $errors errors, $leaked bytes definitely lost"
[ "$unfinished" = 0 ] || summary+=", $unfinished runs without an exit report"
summary+=" (${secs} s)"
if [ "$runs" = 0 ]; then
  echo "$summary"; echo "valgrind: FAILED: no valgrind log was written: the wrapper never ran"; exit 1
fi
if [ ${#bad[@]} -gt 0 ] || [ ${#failed[@]} -gt 0 ]; then
  [ ${#failed[@]} -eq 0 ] || echo "valgrind: failed under valgrind: ${failed[*]}"
  echo "$summary"; echo "valgrind: FAILED"; exit 1
fi
echo "$summary"
