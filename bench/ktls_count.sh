#!/usr/bin/env bash
# bench/ktls_count.sh: userspace instructions per MB forwarded in TCP mode,
# counted inside Linux 6.1 with kTLS (issue 15, section 5). COUNTS, NOT
# TIMINGS: the kernel runs under User-Mode Linux (emulated, ~100x slower
# syscalls), so nothing there is timed; callgrind's instruction counts do
# not depend on time.
#
# Usage: bash bench/ktls_count.sh [--h2] [-h]
#
# --h2: the HTTP/2 mode (issue 16, section 5) instead: userspace
# instructions per 1 MiB HTTP/2 response (h2load, one connection of N1 and
# one of N2 responses) for ringtls with kTLS (file frames spliced), ringtls
# --ktls off, and nginx with `ssl_conf_command Options KTLS;` (whether it
# really offloaded is read from /proc/net/tls_stat and printed); see
# bench/ktls_h2_count.py. Same N1, N2, RINGTLS, KEEP_TMP.
#
# Run on the host. It boots Linux 6.1 (tests/kernel/run-kernel.sh) and
# runs bench/ktls_count.py inside it, which puts each server under
# `valgrind --tool=callgrind` (the server process only) in front of one echo
# upstream (bench/echo_upstream.c) and echoes SIZE-byte blocks through one
# TLS 1.3 connection at a time (bench/tls_echo.c --verify):
#   ringtls-ktls  ringtls --tcp-proxy, --ktls on --ktls-rx-no-rekey: both
#                 directions spliced in the kernel (proved per connection:
#                 /proc/net/tls_stat TlsTxSw +1 and TlsRxSw +1, and the
#                 session's log line says the bytes were spliced)
#   ringtls-user  ringtls --tcp-proxy --ktls off: OpenSSL in userspace
#   haproxy       Debian's HAProxy, mode tcp (bench/haproxy-tcp.cfg.in):
#                 userspace TLS; `haproxy -vv` says whether this build has
#                 kTLS (HAProxy's kTLS came in 3.3; Debian 12 has 2.6)
# Per server: a warm-up connection (one echo), then one connection of N1
# echoes and one of N2, callgrind's counters zeroed before and dumped after
# each. instructions per MB = (Ir(N2) - Ir(N1)) / (MB echoed in N2 - in N1);
# what every connection costs whatever it carries (handshake, connect,
# close) cancels there and is reported apart as "per connection". A MB
# echoed is 10^6 bytes client -> upstream and the same 10^6 bytes back.
#
# Environment:
#   RINGTLS=build/ringtls   the binary (a RelWithDebInfo or Release build)
#   HAPROXY=haproxy         (missing: the haproxy row says so)
#   SIZE=1048576 N1=1 N2=17 the batches: N1 and N2 echoes of SIZE bytes
#   KEEP_TMP=1              keep the temp dir (callgrind dumps, logs)
# Exit status: 0; 1 on any failure (a server that did not count, a kTLS
# run that was not offloaded); 77 where Linux 6.1 could not be booted.
# Takes 3-6 minutes (valgrind in an emulated kernel; more on a busy host).
set -euo pipefail

H2MODE=0
if [[ ${1:-} == --h2 ]]; then
	H2MODE=1
	shift
fi
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
	sed -n '2,44p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
fi
(($# == 0)) || { echo "usage: bash bench/ktls_count.sh [--h2] [-h]" >&2; exit 2; }

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")
cd "$REPO_DIR"
RINGTLS=$(realpath "${RINGTLS:-build/ringtls}")
SIZE=${SIZE:-1048576} N1=${N1:-1} N2=${N2:-17}
for v in SIZE N1 N2; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "ktls_count: $v must be a positive integer" >&2; exit 2; }
done
((N2 > N1)) || { echo "ktls_count: N2 must be larger than N1" >&2; exit 2; }

die() { echo "ktls_count: $*" >&2; exit 1; }
[[ -x $RINGTLS ]] || die "no $RINGTLS: build ringtls first (or set RINGTLS=)"
for tool in valgrind callgrind_control callgrind_annotate cc openssl python3; do
	command -v "$tool" >/dev/null || die "$tool is missing (scripts/deps.sh bench installs it)"
done
HAPROXY=${HAPROXY:-haproxy}
HAPROXY=$(command -v "$HAPROXY" || { [[ -x /usr/sbin/$HAPROXY ]] && echo "/usr/sbin/$HAPROXY"; } || true)

tmp=$(mktemp -d /tmp/ringtls-ktls-count.XXXXXX)
if [[ ${KEEP_TMP:-0} == 1 ]]; then
	echo "ktls_count: keeping $tmp"
else
	trap 'rm -rf "$tmp"' EXIT
fi

if ((H2MODE)); then
	command -v h2load >/dev/null || die "h2load is missing (Debian: nghttp2-client; scripts/deps.sh bench)"
	NGINX=$(command -v nginx || echo /usr/sbin/nginx)
	[[ -x $NGINX ]] || die "nginx is missing (scripts/deps.sh bench)"
	cmd=(tests/kernel/run-kernel.sh --kernel 6.1 --mem 1G --timeout 900 --
		env RINGTLS="$RINGTLS" python3 bench/ktls_h2_count.py --tmp "$tmp"
		--out "$tmp/out.json" --n1 "$N1" --n2 "$N2")
	echo "ktls_count: ${cmd[*]}"
	set +e
	"${cmd[@]}" 2>&1 | grep --line-buffered -E '^(ktls_count|SKIP|run-kernel|Traceback|  |[A-Za-z]*Error)'
	rc=${PIPESTATUS[0]}
	set -e
	if [[ $rc == 77 ]]; then
		echo "ktls_count: SKIP: Linux 6.1 could not be booted here (tests/kernel/run-kernel.sh)"
		exit 77
	fi
	[[ -f $tmp/out.json ]] || die "the guest wrote no result (exit $rc)"
	prc=0
	python3 - "$tmp/out.json" "$RINGTLS" "$("$NGINX" -v 2>&1)" <<'EOF' || prc=$?
import json, sys
out, ringtls, nginx = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
n1, n2, rows = out["n1"], out["n2"], out["servers"]
print(f"\nInstruction counts, NOT timings: userspace instructions of the server process "
      f"(callgrind Ir), inside Linux {out['kernel']} under User-Mode Linux; HTTP/2 over TLS 1.3 "
      f"TLS_AES_128_GCM_SHA256, GET of a 1 MiB file, one h2load connection of {n1} and then "
      f"{n2} responses. ringtls: {ringtls}. {nginx}.\n")
print("| server | TLS records made by | instructions per 1 MiB response | of which in glibc mem* | "
      "per response without mem* | instructions per connection | rchar per response | "
      "x ringtls kTLS (per response) |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
base = rows.get("ringtls-ktls", {}).get("per_response")
for name, m in rows.items():
    if "error" in m:
        print(f"| {name} | FAILED: {m['error'][:300]} | | | | | | |")
        continue
    ratio = f"{m['per_response'] / base:.1f}x" if base else "-"
    print(f"| {name} | {m['tls']} | {m['per_response']:,} | {m['mem_per_response']:,} | "
          f"{m['per_response'] - m['mem_per_response']:,} | {m['per_conn']:,} | "
          f"{m['rchar_per_response']:,} | {ratio} |")
for name, m in rows.items():
    for b in m.get("batches", []):
        print(f"  {name}: {b['responses']} x 1 MiB: Ir {b['ir']:,} (mem* {b['ir_mem']:,}), "
              f"tls_stat {b['tls_stat']}, rchar {b['rchar']:,}")
    if "command" in m:
        print(f"  {name}: {m['command']}")
sys.exit(1 if any("error" in m for m in rows.values()) else 0)
EOF
	((rc == 0 && prc == 0)) || die "failed (guest exit $rc)"
	exit 0
fi

servers='"ringtls-ktls", "ringtls-user"'
haproxy_note="not installed (scripts/deps.sh bench installs it): no haproxy row"
if [[ -n $HAPROXY ]]; then
	servers+=', "haproxy"'
	features=$("$HAPROXY" -vv 2>&1 | sed -n 's/^Feature list : //p')
	if [[ " $features " == *" +KTLS "* ]]; then
		haproxy_note="$("$HAPROXY" -v | head -1): built with kTLS (+KTLS), run here WITHOUT it (bench/haproxy-tcp.cfg.in does not ask for it)"
	else
		haproxy_note="$("$HAPROXY" -v | head -1): no kTLS in this build (\`haproxy -vv\` feature list has no KTLS; HAProxy's kTLS came in 3.3): userspace TLS only"
	fi
fi

cc -O2 -o "$tmp/tls_echo" bench/tls_echo.c -lssl -lcrypto
cc -O2 -o "$tmp/echo_upstream" bench/echo_upstream.c
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/key.pem" \
	-out "$tmp/cert.pem" -days 7 -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
cat >"$tmp/spec.json" <<EOF
{"tmp": "$tmp", "cert": "$tmp/cert.pem", "key": "$tmp/key.pem", "ringtls": "$RINGTLS",
 "haproxy": "$HAPROXY", "tls_echo": "$tmp/tls_echo", "echo_upstream": "$tmp/echo_upstream",
 "size": $SIZE, "n1": $N1, "n2": $N2, "servers": [$servers]}
EOF

cmd=(tests/kernel/run-kernel.sh --kernel 6.1 --mem 1G --timeout 540 --
	python3 bench/ktls_count.py --spec "$tmp/spec.json" --out "$tmp/out.json")
echo "ktls_count: ${cmd[*]}"
set +e
"${cmd[@]}" 2>&1 | grep --line-buffered -E '^(ktls_count|SKIP|run-kernel|Traceback|  |[A-Za-z]*Error)'
rc=${PIPESTATUS[0]}
set -e
if [[ $rc == 77 ]]; then
	echo "ktls_count: SKIP: Linux 6.1 could not be booted here (tests/kernel/run-kernel.sh)"
	exit 77
fi
[[ -f $tmp/out.json ]] || die "the guest wrote no result (exit $rc)"

prc=0
python3 - "$tmp/out.json" "$RINGTLS" "$haproxy_note" "$SIZE" "$N1" "$N2" <<'EOF' || prc=$?
import json, sys
out, ringtls, note = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
size, n1, n2 = map(int, sys.argv[4:7])
rows = out["servers"]
print(f"\nInstruction counts, NOT timings: userspace instructions of the server process "
      f"(callgrind Ir), inside Linux {out['kernel']} under User-Mode Linux; TCP mode, TLS 1.3 "
      f"TLS_AES_128_GCM_SHA256, one connection echoing {n1} and then {n2} x {size} bytes; "
      f"a MB echoed = 10^6 bytes each way. ringtls: {ringtls}. haproxy: {note}.\n")
print("| server | records made by | instructions per MB echoed | of which in glibc mem* | "
      "per MB without mem* | instructions per connection | x spliced ringtls (per MB) |")
print("|---|---|---:|---:|---:|---:|---:|")
path = {"ringtls-ktls": "kernel (kTLS), spliced both ways", "ringtls-user": "OpenSSL (--ktls off)",
        "haproxy": "OpenSSL (no kTLS in this build)"}
base = rows.get("ringtls-ktls", {}).get("per_mb")
for name, m in rows.items():
    if "error" in m:
        print(f"| {name} | {path[name]} | FAILED: {m['error'][:200]} | | | | |")
        continue
    ratio = f"{m['per_mb'] / base:.1f}x" if base else "-"
    print(f"| {name} | {path[name]} | {m['per_mb']:,} | {m['mem_per_mb']:,} | "
          f"{m['per_mb'] - m['mem_per_mb']:,} | {m['per_conn']:,} | {ratio} |")
print("\nglibc's memcpy/memmove/memset use `rep movsb`/`rep stosb` for larger blocks, which "
      "callgrind counts once per byte and the CPU retires as one instruction: the mem* column "
      "is mostly bytes copied or filled, not instructions the CPU runs.")
for name, m in rows.items():
    for b in m.get("batches", []):
        extra = f", (spliced, copied) {b['spliced_copied']}" if "spliced_copied" in b else ""
        print(f"  {name}: {b['echoes']} x {size} bytes: Ir {b['ir']:,} (mem* {b['ir_mem']:,}), "
              f"tls_stat {b['tls_stat']}{extra}")
    if "command" in m:
        print(f"  {name}: {m['command']}")
sys.exit(1 if any("error" in m for m in rows.values()) else 0)
EOF
((rc == 0 && prc == 0)) || die "failed (guest exit $rc)"
