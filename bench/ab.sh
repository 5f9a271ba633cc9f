#!/bin/bash
# A/B of two (or more) ringtls binaries on one static file, for the changes
# issue 20 asks to measure one by one. Each binary serves the same file
# with the bench's TLS flags (--threads 1, TLS 1.3, AES-128-GCM; AB_PLAIN=1:
# plaintext), pinned to CPU 0; wrk runs on CPU 1.
#
#   bench/ab.sh cpu BYTES ROUNDS N CONNS BIN...
#       server CPU µs per response (all threads' schedstat run time over
#       N responses, after 20 to warm up); the binaries take turns round
#       by round, so a slow spell of the shared machine hits each; prints
#       every round, each binary's median, and the median of the per-round
#       ratios (first binary / each other: above 1, the other is cheaper).
#   bench/ab.sh callgrind BYTES N1 N2 BIN...
#       userspace instructions per response under callgrind, (Ir(N2) -
#       Ir(N1)) / (N2 - N1), one connection (exact; the kernel's work is
#       not in it).
#   bench/ab.sh syscalls BYTES N BIN...
#       strace -c over N responses on one connection: calls per response.
#
# BIN may carry flags after commas: build/ringtls,--openssl-records.
# AB_CLOSE=1: every request on a new connection (Connection: close), so
# with BIN,--no-tickets each response costs a full handshake.
# AB_PLAIN=1: plaintext HTTP on --listen instead, without the TLS flags,
# for changes whose cost could reach every path.
# BYTES is the file's size (16384, 1048576, ...). Needs wrk, valgrind,
# strace, openssl (scripts/deps.sh bench, and strace).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mode=${1:?usage: see the head of $0}
shift
tmp=$(mktemp -d /tmp/rtls-ab.XXXXXX)
srv=
cleanup() {
	[ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

mkdir "$tmp/www"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/key.pem" \
	-out "$tmp/cert.pem" -days 2 -subj /CN=localhost 2>/dev/null
head -c "$1" /dev/urandom >"$tmp/www/f"
shift

listen=--tls-listen scheme=https
tls=(--cert "$tmp/cert.pem" --key "$tmp/key.pem" --no-tls12 --tls13-ciphersuites TLS_AES_128_GCM_SHA256)
if [ "${AB_PLAIN:-0}" = 1 ]; then
	listen=--listen scheme=http tls=()
fi

# start BIN[,FLAG...] [wrapper...]: runs the server, sets srv and port;
# the flags after commas are added to its command line (the same binary
# with and without --openssl-records, say)
start() {
	local bin=${1%%,*} extra=()
	[[ $1 == *,* ]] && IFS=, read -ra extra <<<"${1#*,}"
	shift
	"$@" "$bin" serve --threads 1 "${tls[@]}" --root "$tmp/www" \
		"$listen" 127.0.0.1:0 "${extra[@]}" >"$tmp/log" 2>&1 &
	srv=$!
	port=
	for _ in $(seq 300); do
		port=$(grep -oE "127\.0\.0\.1:[0-9]+ \($scheme\)" "$tmp/log" | grep -oE ':[0-9]+' | tr -d :) || true
		[ -n "$port" ] && break
		sleep 0.1
	done
	[ -n "$port" ] || { cat "$tmp/log" >&2; exit 1; }
}

stop() {
	kill "$srv"
	wait "$srv" 2>/dev/null || true
	srv=
}

# fixed N [CONNS]: exactly N responses (bench/fixed_count.lua)
fixed() {
	BENCH_REQUESTS=$1 taskset -c 1 wrk -t1 -c"${2:-1}" -d600 -s "$here/fixed_count.lua" \
		${AB_CLOSE:+-H "Connection: close"} \
		"$scheme://127.0.0.1:$port/f" | grep -q "fixed_count: $1 responses" ||
		{ echo "wrk did not get $1 responses" >&2; exit 1; }
}

cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {print s}'; }

median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

case $mode in
cpu)
	rounds=$1 n=$2 conns=$3
	shift 3
	for r in $(seq "$rounds"); do
		for i in $(seq $#); do
			bin=${!i}
			start "$bin" taskset -c 0
			fixed 20 "$conns"
			a=$(cpu_ns "$srv")
			fixed "$n" "$conns"
			sleep 0.2
			b=$(cpu_ns "$srv")
			stop
			us=$(awk -v a="$a" -v b="$b" -v n="$n" 'BEGIN {printf "%.2f", (b - a) / n / 1000}')
			echo "round $r binary $i $us us/response ($bin)"
			echo "$us" >>"$tmp/r$i"
		done
	done
	for i in $(seq $#); do
		echo "binary $i: median $(median <"$tmp/r$i") us/response (${!i})"
		[ "$i" -gt 1 ] && paste "$tmp/r1" "$tmp/r$i" | awk '{print $1 / $2}' | median |
			xargs printf "binary 1 / binary $i, median of the per-round ratios: %.3f\n"
	done
	;;
callgrind)
	n1=$1 n2=$2
	shift 2
	for bin in "$@"; do
		start "$bin" valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.%p"
		fixed 3
		irs=()
		for n in "$n1" "$n2"; do
			sleep 1
			callgrind_control -z "$srv" >/dev/null
			fixed "$n"
			sleep 1
			callgrind_control -d "$srv" >/dev/null
			irs+=("$(grep -h '^summary:' "$(ls -t "$tmp"/cg."$srv".* | head -1)" | awk '{print $2}')")
		done
		stop
		echo "$(((irs[1] - irs[0]) / (n2 - n1))) instructions/response (Ir ${irs[0]} at $n1, ${irs[1]} at $n2; $bin)"
	done
	;;
syscalls)
	n=$1
	shift
	for bin in "$@"; do
		start "$bin"
		fixed 3
		strace -f -c -o "$tmp/strace" -p "$srv" 2>/dev/null &
		st=$!
		sleep 0.5
		fixed "$n"
		sleep 0.3
		kill -INT "$st"
		wait "$st" || true
		stop
		echo "$bin: per response:"
		awk -v n="$n" '$4 ~ /^[0-9]+$/ && $NF != "total" {printf "  %-16s %.1f\n", $NF, $4 / n}' "$tmp/strace"
	done
	;;
*)
	echo "usage: see the head of $0" >&2
	exit 2
	;;
esac
