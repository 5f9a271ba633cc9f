#!/usr/bin/env bash
# bench/run.sh: ringtls against nginx (and h2o, where Debian has it) on
# loopback, one core for the servers and one for the client. Not part of
# the test suite. It reports; it does not judge: a missed target still
# exits 0, and only a failure to run (a missing tool, a server that does
# not start, wrong bodies, wrk errors) exits non-zero, after writing what
# it measured.
#
# Usage: bash bench/run.sh [--quick]
# The measuring is in bench/bench.py, the report and plots in
# bench/report.py; see bench/README.md for what each number means.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: bash bench/run.sh [--quick]

Workloads (wrk -t1, keep-alive unless said): plaintext and TLS GET /hello
(-c64), 16 KiB file (-c32) and 1 MiB file (-c8); full and resumed TLS 1.3
handshakes (Connection: close, -c32). Servers: ringtls --threads 1, nginx
with one worker, h2o with one thread, all pinned to SERVER_CPU; TLS 1.3
TLS_AES_128_GCM_SHA256 with one ECDSA P-256 certificate for all.
Reverse proxy (issue 14; WORKLOADS=proxy runs only these): TLS GET /hello
(-c64), GET 1 MiB (-c8) and POST 1 MiB (-c8) through ringtls --proxy,
HAProxy (nbthread 1) and nginx (proxy_pass, one worker) to one nginx
backend on the client CPUs; judged by server CPU per request.
HTTP/2 (issue 16; WORKLOADS=h2 runs only these, bench/h2bench.py): h2load
-t1 over TLS (ALPN h2) against ringtls, nginx (listen ... ssl http2) and
h2o: GET /hello (-c16 -m10), 16 KiB file (-c8 -m10), 1 MiB file (-c4
-m10); judged by server CPU per request; report <date>-h2.md.
TCP mode (issue 15; WORKLOADS=tcp runs only this): 8 TLS connections each
echoing 1 MiB again and again (bench/tls_echo.c) through ringtls
--tcp-proxy, HAProxy (mode tcp) and nginx (stream module, TLS termination)
to one echo upstream (bench/echo_upstream.c) on the client CPUs; judged by
server CPU per MB.
Measures req/s and MB/s (median of interleaved rounds), server CPU per
request, wrk's CPU (more wrk processes where one saturates its core and a
client CPU is free), where the servers' time goes (perf, cpu-clock),
userspace instructions per request (callgrind), RSS per idle TLS
connection, and, where this kernel has no kTLS, memory and
instructions inside Linux 6.1 with kTLS (tests/kernel/run-kernel.sh).
Writes bench/results/<YYYY-MM-DD>.md, .json and three PNG plots.

  --quick        smoke run (~5 min): DURATION=2 ROUNDS=1 WARMUP=0 PERF_SECS=2
                 IDLE_CONNS=500 CG_SCALE=0.2 KTLS_CONNS=200, and no report
                 file unless NO_REPORT=0 is set
  -h, --help     this text

Environment (defaults for a full run, 16-20 minutes):
  DURATION=3       seconds per timed wrk run
  ROUNDS=5         interleaved rounds; the median is reported
  WARMUP=1         seconds of unrecorded load per server and workload first
  SERVER_CPU=0     CPU the servers are pinned to
  CLIENT_CPUS=...  comma-separated CPUs for wrk processes (default: every
                   CPU but SERVER_CPU); CLIENT_CPU=N is the same for one CPU
  CLIENT_PROCS_MAX=len(CLIENT_CPUS)  most wrk processes per workload; the
                   warm-up adds one while the busiest uses >= 90% of its core
  CLIENT_PROCS=N   fixed number of wrk processes (no warm-up decision)
  CLIENT_PROCS_TEST=1  lets CLIENT_CPUS list a CPU twice, and CLIENT_BOUND_PCT
                   (default 90) move the bar, to watch the count grow on a
                   small or busy machine (never for numbers you keep)
  WORKLOADS=...    comma-separated subset of plain-hello,tls-hello,plain-16k,
                   tls-16k,plain-1m,tls-1m,tls-16k-c8,tls-16k-c64,tls-16k-c256,
                   tls-1m-c64,tls-1m-c256,hs-full,hs-resumed,proxy-hello,
                   proxy-1m,proxy-upload,tcp-echo-1m,h2-hello,h2-16k,h2-1m,
                   or the groups static (all but the proxy, tcp and h2
                   ones), proxy, tcp and h2; proxy or tcp workloads alone:
                   check and timed phases only, report <date>-proxy (-tcp,
                   -proxy-tcp) by default. The h2 workloads run after the
                   others, in bench/h2bench.py (check and timed phases
                   only; their report is <date>-h2, or REPORT_NAME-h2)
  H2=off           a full run (no WORKLOADS) without the h2 workloads
  PEERS=...        comma-separated servers for the static workloads, ringtls
                   and nginx among them (default: ringtls,nginx,h2o where h2o
                   is): ringtls-epoll adds ringtls on its epoll backend
                   (issue 18; then ringtls runs with --backend io_uring)
  PROXY_KEEPALIVE=64  idle upstream connections each proxy keeps (ringtls
                   --proxy-keepalive, nginx keepalive, HAProxy pool-max-conn)
  CRYPTO_S=2       seconds of `openssl speed` per round for hs-full's crypto
                   in isolation (one ECDSA P-256 sign, two X25519)
  PERF=1           0: skip the perf phase (skipped anyway without a working
                   `perf record -e cpu-clock`)
  PERF_SECS=3      seconds of wrk load recorded per server and workload
  PERF_WORKLOADS=plain-hello,tls-hello,tls-16k,tls-1m,hs-full  (those also in WORKLOADS)
  CALLGRIND=1      0: skip the instruction counts
  CG_SCALE=1       multiplies the request counts of the callgrind batches
  IDLE_CONNS=10000 idle TLS connections for memory per connection (0: skip)
  KERNEL=auto      0: skip the Linux 6.1 part (run only where the host
                   has no kTLS)
  KTLS_CONNS=2000  idle connections per server inside Linux 6.1 (the
                   10,000 result is bench/results/*-ktls-memory.md)
  RINGTLS=build/ringtls, NGINX=nginx, WRK=wrk, H2O=h2o (off: no h2o),
  HAPROXY=haproxy, H2LOAD=h2load
  NO_REPORT=1      do not write bench/results/
  REPORT_NAME=N    bench/results/N.md, N.json, N-*.png (default: the date)
  KEEP_TMP=1       keep the temp dir (configs, logs, callgrind dumps)
EOF
}

die() {
	echo "run.sh: $*" >&2
	exit 1
}

# The command as typed, with the settings that came from the environment.
invocation() {
	local v cmd=""
	for v in DURATION ROUNDS WARMUP SERVER_CPU CLIENT_CPU CLIENT_CPUS CLIENT_PROCS_MAX \
		CLIENT_PROCS CLIENT_PROCS_TEST CLIENT_BOUND_PCT WORKLOADS CRYPTO_S PERF PERF_SECS \
		PERF_WORKLOADS CALLGRIND CG_SCALE IDLE_CONNS KERNEL KTLS_CONNS RINGTLS NGINX WRK H2O \
		HAPROXY H2LOAD H2 PROXY_KEEPALIVE PEERS NO_REPORT REPORT_NAME; do
		if [[ -n ${!v+x} ]]; then
			cmd+="$v=$(printf '%q' "${!v}") "
		fi
	done
	cmd+="bash bench/run.sh"
	if (($# > 0)); then
		cmd+=" $(printf '%q ' "$@")"
		cmd=${cmd% }
	fi
	printf '%s' "$cmd"
}

BENCH_COMMAND=$(invocation "$@")
QUICK=0
for arg in "$@"; do
	case $arg in
	--quick) QUICK=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		die "unknown argument: $arg"
		;;
	esac
done

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")

for v in DURATION ROUNDS WARMUP SERVER_CPU CLIENT_CPU CLIENT_PROCS_MAX CLIENT_PROCS \
	PERF_SECS IDLE_CONNS KTLS_CONNS PROXY_KEEPALIVE; do
	if [[ -n ${!v+x} && ! ${!v} =~ ^[0-9]+$ ]]; then
		die "$v must be a non-negative integer, not '${!v}'"
	fi
done
if [[ -n ${CLIENT_CPUS:-} && ! $CLIENT_CPUS =~ ^[0-9]+(,[0-9]+)*$ ]]; then
	die "CLIENT_CPUS must be a comma-separated list of CPU numbers, not '$CLIENT_CPUS'"
fi

# The HTTP/2 workloads (h2, h2-*) run in bench/h2bench.py, after
# bench/bench.py has run the others; a full run (no WORKLOADS) runs both
# unless H2=off.
H2_WORKLOADS="" REST_WORKLOADS=""
if [[ -z ${WORKLOADS:-} ]]; then
	[[ ${H2:-} == off ]] || H2_WORKLOADS=h2
else
	IFS=, read -ra _wls <<<"$WORKLOADS"
	for w in "${_wls[@]}"; do
		w=${w// /}
		[[ -n $w ]] || continue
		if [[ $w == h2 || $w == h2-* ]]; then
			H2_WORKLOADS+=${H2_WORKLOADS:+,}$w
		else
			REST_WORKLOADS+=${REST_WORKLOADS:+,}$w
		fi
	done
	[[ -n $H2_WORKLOADS$REST_WORKLOADS ]] || die "WORKLOADS selects nothing: '$WORKLOADS'"
fi
# bench.py runs unless WORKLOADS names h2 workloads only
RUN_BENCH_PY=1
[[ -n ${WORKLOADS:-} && -z $REST_WORKLOADS ]] && RUN_BENCH_PY=0

# ---------------------------------------------------------------- tools

# nginx lives in /usr/sbin, which a non-root PATH may lack.
find_tool() {
	command -v "$1" 2>/dev/null || { [[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1"; } || true
}

# Whether this run may install packages: root, on a system with apt-get.
can_apt() {
	[[ $EUID -eq 0 ]] && command -v apt-get >/dev/null
}

apt_install() {
	DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
		>/dev/null || die "apt-get install $* failed"
}

check_tools() {
	local missing=() tool pkg kernel_tools="" proxy_tools=""
	# The Linux 6.1 phase (tests/kernel/run-kernel.sh) unpacks a Debian
	# kernel and its modules, and skips without these: installed where we
	# can install, never a reason to stop (a host with kTLS skips it anyway).
	if [[ ${KERNEL:-auto} != 0 ]] && can_apt; then
		kernel_tools="depmod:kmod modprobe:kmod patchelf:patchelf ip:iproute2"
	fi
	# The proxy and TCP-mode workloads (all by default, or named in
	# WORKLOADS) need HAProxy.
	if [[ -z ${WORKLOADS:-} || ${WORKLOADS} == *proxy* || ${WORKLOADS} == *tcp* ]] &&
		[[ -z ${HAPROXY:-} ]]; then
		proxy_tools="haproxy:haproxy"
	fi
	# The HTTP/2 workloads need h2load.
	if [[ -n $H2_WORKLOADS && -z ${H2LOAD:-} ]]; then
		proxy_tools+=" h2load:nghttp2-client"
	fi
	# tool:package, Debian names
	for tool in nginx:nginx-light wrk:wrk curl:curl python3:python3 taskset:util-linux \
		openssl:openssl cc:gcc gnuplot:gnuplot-nox valgrind:valgrind \
		callgrind_control:valgrind $kernel_tools $proxy_tools; do
		pkg=${tool#*:}
		tool=${tool%%:*}
		if [[ -z $(find_tool "$tool") && " ${missing[*]} " != *" $pkg "* ]]; then
			missing+=("$pkg")
		fi
	done
	if ((${#missing[@]} > 0)); then
		if ! can_apt; then
			echo "run.sh: missing: ${missing[*]}; install them with:" >&2
			echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
			exit 1
		fi
		echo "installing ${missing[*]} with apt-get" >&2
		apt_install "${missing[@]}"
	fi
}

# Whether apt-get could install package $1. Not `apt-cache policy | grep -q`:
# grep -q exits at its match, apt-cache then dies of SIGPIPE, and under
# pipefail the test fails although the package is there.
offered() {
	local policy
	policy=$(LC_ALL=C apt-cache policy "$1" 2>/dev/null) || return 1
	[[ $policy =~ Candidate:\ [0-9] ]]
}

# The TCP-mode workload (all by default, or tcp in WORKLOADS) builds its
# client with OpenSSL's headers, and needs nginx's stream module, which
# Debian ships as a module of its own (libnginx-mod-stream).
check_tcp() {
	[[ -z ${WORKLOADS:-} || ${WORKLOADS} == *tcp* ]] || return 0
	local need=() v ngx modules
	if ! printf '#include <openssl/ssl.h>\n' | cc -E -x c - >/dev/null 2>&1; then
		need+=(libssl-dev)
	fi
	ngx=${NGINX:-$(find_tool nginx)}
	# captured, not piped into grep -q (see offered())
	v=$("$ngx" -V 2>&1) || true
	if [[ $v == *--with-stream=dynamic* ]]; then
		modules=/usr/lib/nginx/modules
		[[ $v =~ --modules-path=([^ ]+) ]] && modules=${BASH_REMATCH[1]}
		[[ -e $modules/ngx_stream_module.so ]] || need+=(libnginx-mod-stream)
	fi
	((${#need[@]} > 0)) || return 0
	if ! can_apt; then
		echo "run.sh: the TCP-mode workload needs: ${need[*]}; install them with:" >&2
		echo "  sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
		exit 1
	fi
	echo "installing ${need[*]} with apt-get" >&2
	apt_install "${need[@]}"
}

# h2o is a peer only where Debian ships it: one apt-get install, no build.
check_h2o() {
	[[ ${H2O:-} != off ]] || return 0
	[[ -n ${H2O:-} || -n $(find_tool h2o) ]] && return 0
	if can_apt && offered h2o; then
		echo "installing h2o with apt-get" >&2
		apt_install h2o
		return 0
	fi
	echo "run.sh: no h2o (not installed, and apt-cache policy h2o offers none, or not" \
		"root): the report has ringtls and nginx only" >&2
	export H2O=off
}

# perf is optional: without it the perf phase is skipped with a note.
check_perf() {
	[[ ${PERF:-1} != 0 && -z $(find_tool perf) ]] || return 0
	if can_apt && offered linux-perf; then
		echo "installing linux-perf with apt-get" >&2
		apt_install linux-perf
		return 0
	fi
	echo "run.sh: no perf (linux-perf): the report has no \"Where the time goes\"" >&2
}

check_tools
check_tcp
check_h2o
check_perf
RINGTLS=${RINGTLS:-$REPO_DIR/build/ringtls}
[[ -x $RINGTLS ]] ||
	die "no ringtls binary at $RINGTLS; build it: cmake -S . -B build && cmake --build build"
client_cpus=${CLIENT_CPUS:-${CLIENT_CPU:-}}
for cpu in "${SERVER_CPU:-0}" ${client_cpus//,/ }; do
	taskset -c "$cpu" true 2>/dev/null ||
		die "cannot pin to CPU $cpu (nproc: $(nproc)); the harness needs 2 CPUs"
done

export RINGTLS QUICK BENCH_COMMAND
cd "$REPO_DIR"
rc=0
if ((RUN_BENCH_PY)); then
	if [[ -z $H2_WORKLOADS ]]; then
		exec python3 "$BENCH_DIR/bench.py"
	fi
	if [[ -n ${WORKLOADS:-} ]]; then
		WORKLOADS=$REST_WORKLOADS python3 "$BENCH_DIR/bench.py" || rc=$?
	else
		python3 "$BENCH_DIR/bench.py" || rc=$?
	fi
fi
h2rc=0
h2name=${REPORT_NAME:+$REPORT_NAME-h2}
WORKLOADS=$H2_WORKLOADS REPORT_NAME=$h2name python3 "$BENCH_DIR/h2bench.py" || h2rc=$?
((rc != 0)) && exit "$rc"
exit "$h2rc"
