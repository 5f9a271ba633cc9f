#!/usr/bin/env bash
# After a failed ctest run in DIR: each failed test's own failure lines,
# from DIR's LastTest.log and those of the suites it runs inside (ASan in
# DIR/asan, valgrind's, ...), newer than STAMP.
#
#   recap.sh DIR STAMP
#
# Why: CI keeps the head and the tail of a run's output. A failing test's
# lines are printed where it ends, often in the middle, and a test inside
# sanitize.suite is a middle inside a middle; this puts them in the tail.
set -uo pipefail
dir=${1:?usage: recap.sh DIR STAMP}
stamp=${2:?usage: recap.sh DIR STAMP}
find "$dir" -path '*/Testing/Temporary/LastTest.log' -newer "$stamp" -print 2>/dev/null |
	sort | while read -r log; do
	awk -v file="$log" '
	# The lines worth reading: our harnesses print "FAIL: ", sanitizers
	# and Python their own markers.
	function wanted(l) {
		return l ~ /FAIL|check\(s\) failed|^  - |Traceback|[A-Za-z]Error: |AddressSanitizer|LeakSanitizer|runtime error:|ERROR SUMMARY: [1-9]|\*\*\*Timeout|Segmentation fault|Aborted/
	}
	function show(   i, k, from) {
		printf "--- %s (%s)\n", name, file
		k = 0
		for (i = 1; i <= n && k < 25; i++)
			if (wanted(out[i])) { print "  " out[i]; k++ }
		if (k == 0) {   # nothing matched: the last lines it printed
			from = n > 15 ? n - 14 : 1
			for (i = from; i <= n; i++)
				print "  " out[i]
		}
	}
	/^[0-9]+\/[0-9]+ Testing: / { sub(/^[0-9]+\/[0-9]+ Testing: /, ""); name = $0; n = 0; inout = 0; next }
	/^Output:$/ { getline; inout = 1; next }
	/^<end of output>$/ { inout = 0; next }
	inout { out[++n] = substr($0, 1, 300); next }
	/^Test Failed\./ { show() }
	' "$log"
done
