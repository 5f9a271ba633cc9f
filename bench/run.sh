#!/usr/bin/env bash
# bench/run.sh: ringtls against nginx on loopback, one core each for the
# server and for wrk. It reports; it does not judge: a missed target still
# exits 0, and only a failure to run (missing tool, a server that does not
# start, wrk errors, bodies that differ) exits non-zero.
#
# Usage: bash bench/run.sh [--quick]
# See usage() below for the environment it reads.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: bash bench/run.sh [--quick]

Runs GET /hello (wrk -t1 -c64) and GET of a 1 MiB file (wrk -t1 -c8)
against ringtls (--threads 1) and nginx (worker_processes 1), interleaved,
and prints the median req/s of each, the ratio ringtls/nginx and the target.

  --quick        smoke run: DURATION=2 ROUNDS=1, and no report file
                 unless NO_REPORT=0 is set
  -h, --help     this text

Environment:
  DURATION=5     seconds per wrk run
  ROUNDS=3       interleaved rounds; the median of the rounds is reported
  WARMUP=1       seconds of unrecorded load per server and workload first
  SERVER_CPU=0   CPU the servers are pinned to
  CLIENT_CPU=1   CPU wrk is pinned to
  RINGTLS=build/ringtls, NGINX=nginx, WRK=wrk   binaries to use
  NO_REPORT=1    do not write bench/results/<YYYY-MM-DD>.md
  KEEP_TMP=1     keep the temp dir (configs, logs, wrk output) for a post-mortem
EOF
}

die() {
	echo "run.sh: $*" >&2
	exit 1
}

# The command as typed, with the settings that came from the environment,
# captured before defaults are filled in.
invocation() {
	local v cmd=""
	for v in DURATION ROUNDS WARMUP SERVER_CPU CLIENT_CPU RINGTLS NGINX WRK NO_REPORT; do
		if [[ -n ${!v+x} ]]; then
			cmd+="$v=$(printf '%q' "${!v}") "
		fi
	done
	cmd+="bash $(printf '%q' "$0")"
	if (($# > 0)); then
		cmd+=" $(printf '%q ' "$@")"
		cmd=${cmd% }
	fi
	printf '%s' "$cmd"
}

COMMAND=$(invocation "$@")
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

if ((QUICK)); then
	# A smoke run must not overwrite the day's real report.
	DURATION=2
	ROUNDS=1
	NO_REPORT=${NO_REPORT:-1}
fi
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
NO_REPORT=${NO_REPORT:-0}
KEEP_TMP=${KEEP_TMP:-0}
RINGTLS=${RINGTLS:-$REPO_DIR/build/ringtls}

HELLO_CONNS=64
FILE_CONNS=8
FILE_BYTES=$((1024 * 1024))
SMALL_BYTES=$((16 * 1024))
HELLO_BODY='Hello, World!'
# Targets are ringtls/nginx ratios of median req/s.
HELLO_TARGET=1.3
FILE_TARGET=1.0

for v in DURATION ROUNDS SERVER_CPU CLIENT_CPU; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer, not '${!v}'"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer, not '$WARMUP'"
((DURATION > 0)) || die "DURATION must be at least 1"
((ROUNDS > 0)) || die "ROUNDS must be at least 1"
((SERVER_CPU != CLIENT_CPU)) || die "SERVER_CPU and CLIENT_CPU must differ"

# ---------------------------------------------------------------- tools

# nginx lives in /usr/sbin, which a non-root PATH may lack.
find_tool() {
	command -v "$1" 2>/dev/null || { [[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1"; } || true
}

check_tools() {
	local missing=() tool pkg
	# tool:package, Debian names
	for tool in nginx:nginx-light wrk:wrk curl:curl python3:python3 \
		taskset:util-linux cmp:diffutils; do
		pkg=${tool#*:}
		tool=${tool%%:*}
		if [[ -z $(find_tool "$tool") ]]; then
			missing+=("$pkg")
		fi
	done
	((${#missing[@]} > 0)) || return 0

	if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
		echo "run.sh: missing: ${missing[*]}; install them with:" >&2
		echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
		exit 1
	fi
	echo "installing ${missing[*]} with apt-get" >&2
	DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
		die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
}

check_tools
NGINX=${NGINX:-$(find_tool nginx)}
WRK=${WRK:-$(find_tool wrk)}
[[ -x $NGINX ]] || die "nginx not found at '$NGINX'"
[[ -x $WRK ]] || die "wrk not found at '$WRK'"
[[ -x $RINGTLS ]] ||
	die "no ringtls binary at $RINGTLS; build it: cmake -S . -B build && cmake --build build"

taskset -c "$SERVER_CPU" true 2>/dev/null ||
	die "cannot pin to SERVER_CPU=$SERVER_CPU (nproc: $(nproc)); the harness needs 2 CPUs"
taskset -c "$CLIENT_CPU" true 2>/dev/null ||
	die "cannot pin to CLIENT_CPU=$CLIENT_CPU (nproc: $(nproc)); the harness needs 2 CPUs"

# ------------------------------------------------------------ processes

TMP=""
RT_PID=""
NGX_PID=""
NGX_WORKERS=""

# stop_pid PID SECONDS: SIGTERM, then SIGKILL after SECONDS. Returns the
# process's exit status. PID must be a child of this shell.
stop_pid() {
	local pid=$1 limit=$2 i rc=0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < limit * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "run.sh: pid $pid still running after ${limit}s; SIGKILL" >&2
		kill -KILL "$pid" 2>/dev/null || true
		rc=137
	fi
	wait "$pid" 2>/dev/null || rc=$?
	return "$rc"
}

stop_ringtls() {
	local pid=$RT_PID
	[[ -n $pid ]] || return 0
	RT_PID=""
	# ringtls finishes responses in flight for up to --shutdown-timeout (10s).
	stop_pid "$pid" 15
}

stop_nginx() {
	local pid=$NGX_PID rc=0 w
	[[ -n $pid ]] || return 0
	NGX_PID=""
	stop_pid "$pid" 10 || rc=$?
	if ((rc == 137)); then
		# A master killed with SIGKILL leaves its workers running: they
		# were recorded by parent PID at start, so stop them by PID.
		for w in $NGX_WORKERS; do
			kill -KILL "$w" 2>/dev/null || true
		done
	fi
	return "$rc"
}

cleanup() {
	local rc=$?
	trap - EXIT
	stop_ringtls || true
	stop_nginx || true
	if [[ -n $TMP && -d $TMP ]]; then
		if ((KEEP_TMP)); then
			echo "run.sh: kept $TMP" >&2
		else
			rm -rf -- "$TMP"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_ready NAME PID PORT LOG: poll GET /hello until it answers, the
# process dies, or 10 s pass.
wait_ready() {
	local name=$1 pid=$2 port=$3 log=$4 i
	for ((i = 0; i < 100; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$log" >&2 || true
			die "$name exited during start-up (log above, from $log)"
		fi
		if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/hello"; then
			return 0
		fi
		sleep 0.1
	done
	tail -n 20 "$log" >&2 || true
	die "$name did not answer on 127.0.0.1:$port within 10s"
}

# Two distinct free ports, held at the same time so they differ. Another
# process could take one before the servers bind it; start-up then fails
# loudly rather than measuring the wrong thing.
free_ports() {
	python3 -c 'import socket; s=[socket.socket() for _ in range(2)]; [x.bind(("127.0.0.1", 0)) for x in s]; print(*[x.getsockname()[1] for x in s])'
}

start_ringtls() {
	RT_CMD="taskset -c $SERVER_CPU $RINGTLS serve --listen 127.0.0.1:$RT_PORT --root $TMP/www --threads 1"
	taskset -c "$SERVER_CPU" "$RINGTLS" serve --listen "127.0.0.1:$RT_PORT" \
		--root "$TMP/www" --threads 1 </dev/null >"$TMP/ringtls.log" 2>&1 &
	RT_PID=$!
	wait_ready ringtls "$RT_PID" "$RT_PORT" "$TMP/ringtls.log"
}

start_nginx() {
	local user_directive="# not root: the worker keeps the invoking user"
	if [[ $EUID -eq 0 ]]; then
		# The temp dir is 0700 and root's; a worker that dropped to
		# nobody could not read the files it serves.
		user_directive="user root root;"
	fi
	sed -e "s|@TMP@|$TMP|g" -e "s|@PORT@|$NGX_PORT|g" -e "s|@ROOT@|$TMP/www|g" \
		-e "s|@USER_DIRECTIVE@|$user_directive|g" \
		"$BENCH_DIR/nginx.conf.in" >"$TMP/nginx.conf"
	local ngx=("$NGINX" -p "$TMP/" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf")
	"${ngx[@]}" -t -q 2>"$TMP/nginx-test.log" || {
		cat "$TMP/nginx-test.log" >&2
		die "nginx rejected $TMP/nginx.conf (from bench/nginx.conf.in)"
	}
	NGX_CMD="taskset -c $SERVER_CPU ${ngx[*]}"
	taskset -c "$SERVER_CPU" "${ngx[@]}" </dev/null >"$TMP/nginx.log" 2>&1 &
	NGX_PID=$!
	wait_ready nginx "$NGX_PID" "$NGX_PORT" "$TMP/nginx-error.log"
	NGX_WORKERS=$(pgrep -P "$NGX_PID" || true)
	[[ $NGX_WORKERS =~ ^[0-9]+$ ]] ||
		die "expected one nginx worker under pid $NGX_PID, found: ${NGX_WORKERS:-none}"
}

# --------------------------------------------------------------- checks

# fetch PORT PATH OUT: GET into OUT; dies unless the status is 200.
fetch() {
	local code
	code=$(curl -sS --max-time 10 -o "$3" -w '%{http_code}' "http://127.0.0.1:$1$2") ||
		die "curl http://127.0.0.1:$1$2 failed"
	[[ $code == 200 ]] || die "GET 127.0.0.1:$1$2 returned $code, not 200"
}

# Both servers must return the same bytes, and the right ones, for every URL.
check_bodies() {
	local path want
	printf '%s' "$HELLO_BODY" >"$TMP/want-hello"
	for path in /hello /file-16k.bin /file-1m.bin; do
		case $path in
		/hello) want=$TMP/want-hello ;;
		*) want=$TMP/www$path ;;
		esac
		fetch "$RT_PORT" "$path" "$TMP/body-ringtls"
		fetch "$NGX_PORT" "$path" "$TMP/body-nginx"
		cmp -s "$TMP/body-ringtls" "$TMP/body-nginx" ||
			die "ringtls and nginx return different bodies for $path"
		cmp -s "$TMP/body-ringtls" "$want" ||
			die "both servers return a wrong body for $path"
	done
}

# to_bytes 1.23MB -> bytes (wrk prints sizes in powers of 1024)
to_bytes() {
	awk -v s="$1" 'BEGIN {
		n = s + 0; u = s; sub(/^[0-9.]+/, "", u)
		m = 1
		if (u == "KB") m = 1024; else if (u == "MB") m = 1024^2
		else if (u == "GB") m = 1024^3; else if (u == "TB") m = 1024^4
		printf "%.0f\n", n * m
	}'
}

# run_wrk LABEL PORT CONNS PATH SECONDS MIN_BYTES: sets WRK_RPS. Dies on
# socket errors (connect, read, write, timeout), on any status >= 400
# (wrk's "Non-2xx or 3xx"), and when the bytes read per response are fewer
# than MIN_BYTES (a short or wrong response).
run_wrk() {
	local label=$1 port=$2 conns=$3 path=$4 secs=$5 min_bytes=$6
	local out="$TMP/wrk-$label-$((++WRK_SEQ)).txt" reqs bytes_read per
	taskset -c "$CLIENT_CPU" "$WRK" -t1 -c"$conns" -d"${secs}s" \
		"http://127.0.0.1:$port$path" >"$out" 2>&1 || {
		cat "$out" >&2
		die "wrk failed against $label"
	}
	if grep -qE '^ *(Socket errors|Non-2xx or 3xx responses):' "$out"; then
		cat "$out" >&2
		die "wrk saw errors against $label $path (output above)"
	fi
	WRK_RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
	reqs=$(awk '/ requests in / { print $1 }' "$out")
	bytes_read=$(awk '/ requests in / { print $5 }' "$out")
	if [[ -z $WRK_RPS || -z $reqs || $reqs -eq 0 ]]; then
		cat "$out" >&2
		die "wrk completed no requests against $label $path"
	fi
	per=$(($(to_bytes "$bytes_read") / reqs))
	# wrk rounds sizes to 3 significant digits: allow 1%.
	if ((per * 100 < min_bytes * 99)); then
		cat "$out" >&2
		die "$label $path: $per bytes per response, expected at least $min_bytes"
	fi
}

# cpu_ticks PID: user + system time of the whole process, in clock ticks
cpu_ticks() {
	# comm (field 2) may hold spaces: count fields after its closing ')'.
	sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# measure KEY SRV SECONDS: one wrk run, recorded in RPS and CPU. CPU is
# the server's busy share of its core: well under 100 means wrk (one core)
# was the limit, not the server.
measure() {
	local key=$1 srv=$2 secs=$3 t0 t1 c0 c1 cpu
	c0=$(cpu_ticks "${SERVE_PID[$srv]}")
	t0=$(date +%s%N)
	run_wrk "$srv" "${PORT[$srv]}" "${CONNS[$key]}" "${URLPATH[$key]}" \
		"$secs" "${MINBYTES[$key]}"
	t1=$(date +%s%N)
	c1=$(cpu_ticks "${SERVE_PID[$srv]}")
	cpu=$(calc '%.0f' "($c1 - $c0) / $CLK_TCK / (($t1 - $t0) / 1e9) * 100")
	RPS[$key,$srv]="${RPS[$key,$srv]:-}${RPS[$key,$srv]:+ }$WRK_RPS"
	CPU[$key,$srv]="${CPU[$key,$srv]:-}${CPU[$key,$srv]:+ }$cpu"
}

# ------------------------------------------------------------ reporting

# median "V1 V2 ...": the median of space-separated numbers
median() {
	tr ' ' '\n' <<<"$1" | sort -g | awk '{ a[NR] = $1 } END {
		if (NR % 2) printf "%.2f\n", a[(NR + 1) / 2]
		else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

calc() {
	awk "BEGIN { printf \"$1\n\", $2 }"
}

cpu_model() {
	local m
	m=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
	if [[ -z $m ]]; then
		m=$(lscpu 2>/dev/null | awk -F': *' '/^Model name/ { print $2; exit }' || true)
	fi
	printf '%s' "${m:-unknown}"
}

git_rev() {
	local rev
	rev=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null) || {
		printf 'unknown'
		return
	}
	if [[ -n $(git -C "$REPO_DIR" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
		rev+=" (uncommitted changes)"
	fi
	printf '%s' "$rev"
}

# row WORKLOAD KEY TARGET BYTES: one line of the results table, as
# markdown; BYTES is the body size for MB/s, or 0 for none.
row() {
	local name=$1 key=$2 target=$3 bytes=$4 rt ng ratio verdict rt_mb="-" ng_mb="-"
	rt=$(median "${RPS[$key,ringtls]}")
	ng=$(median "${RPS[$key,nginx]}")
	ratio=$(calc '%.2f' "$rt / $ng")
	verdict=$(awk -v r="$ratio" -v t="$target" 'BEGIN { print (r >= t) ? "MET" : "MISSED" }')
	if ((bytes > 0)); then
		rt_mb=$(calc '%.1f' "$rt * $bytes / 1e6")
		ng_mb=$(calc '%.1f' "$ng * $bytes / 1e6")
	fi
	printf '| %s | %s | %s | %sx | %sx | %s | %s | %s |\n' \
		"$name" "$rt" "$ng" "$ratio" "$target" "$verdict" "$rt_mb" "$ng_mb"
}

report() {
	local key srv
	echo "# ringtls vs nginx, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "| workload | ringtls req/s | nginx req/s | ratio | target | result | ringtls MB/s | nginx MB/s |"
	echo "|---|---:|---:|---:|---:|---|---:|---:|"
	row "GET /hello, keep-alive, -c$HELLO_CONNS" hello "$HELLO_TARGET" 0
	row "GET 1 MiB file, -c$FILE_CONNS" file "$FILE_TARGET" "$FILE_BYTES"
	echo
	echo "Median of $ROUNDS interleaved round(s) of ${DURATION}s, after ${WARMUP}s of warm-up per"
	echo "server and workload; ratio = ringtls / nginx; MB/s = req/s x body size / 10^6."
	echo "Each round, in order: req/s, and the server's CPU use on its core (%);"
	echo "CPU well under 100% means wrk, on one core, was the limit, not the server:"
	echo
	for key in hello file; do
		for srv in ringtls nginx; do
			echo "- $key, $srv: ${RPS[$key,$srv]} req/s; CPU ${CPU[$key,$srv]} %"
		done
	done
	echo
	echo "## Machine"
	echo
	echo "- CPUs: $(nproc) ($(cpu_model)); server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU"
	echo "- kernel: $(uname -srm)"
	echo "- load average before the run: $LOAD_BEFORE"
	echo
	echo "## Versions"
	echo
	echo "- $("$RINGTLS" --version 2>&1 | head -n1), commit $(git_rev)"
	echo "- $("$NGINX" -v 2>&1 | head -n1)"
	echo "- $({ "$WRK" -v 2>&1 || true; } | head -n1)"
	echo
	echo "## Commands"
	echo
	echo '```'
	echo "$COMMAND"
	echo "$RT_CMD"
	echo "$NGX_CMD   # config: bench/nginx.conf.in"
	echo "taskset -c $CLIENT_CPU wrk -t1 -c$HELLO_CONNS -d${DURATION}s http://127.0.0.1:PORT/hello"
	echo "taskset -c $CLIENT_CPU wrk -t1 -c$FILE_CONNS -d${DURATION}s http://127.0.0.1:PORT/file-1m.bin"
	echo '```'
}

# ----------------------------------------------------------------- main

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ringtls-bench.XXXXXX")
mkdir "$TMP/www"
head -c "$FILE_BYTES" /dev/urandom >"$TMP/www/file-1m.bin"
head -c "$SMALL_BYTES" /dev/urandom >"$TMP/www/file-16k.bin"

read -r RT_PORT NGX_PORT < <(free_ports)
[[ -n $RT_PORT && -n $NGX_PORT ]] || die "could not pick free ports"
start_ringtls
start_nginx
echo "ringtls pid $RT_PID on 127.0.0.1:$RT_PORT, nginx pid $NGX_PID on 127.0.0.1:$NGX_PORT" >&2
check_bodies
echo "bodies identical for /hello, /file-16k.bin, /file-1m.bin" >&2

declare -A PORT=([ringtls]=$RT_PORT [nginx]=$NGX_PORT)
declare -A CONNS=([hello]=$HELLO_CONNS [file]=$FILE_CONNS)
declare -A URLPATH=([hello]=/hello [file]=/file-1m.bin)
declare -A MINBYTES=([hello]=${#HELLO_BODY} [file]=$FILE_BYTES)
declare -A SERVE_PID=([ringtls]=$RT_PID [nginx]=$NGX_WORKERS)
declare -A RPS=() CPU=()
CLK_TCK=$(getconf CLK_TCK)
WRK_SEQ=0
WRK_RPS=""

if ((WARMUP > 0)); then
	for key in hello file; do
		for srv in ringtls nginx; do
			run_wrk "$srv" "${PORT[$srv]}" "${CONNS[$key]}" "${URLPATH[$key]}" \
				"$WARMUP" "${MINBYTES[$key]}"
		done
	done
	echo "warmed up (${WARMUP}s per server and workload)" >&2
fi

for ((round = 1; round <= ROUNDS; round++)); do
	for key in hello file; do
		for srv in ringtls nginx; do
			measure "$key" "$srv" "$DURATION"
			printf 'round %d/%d  %-5s  %-7s  %12s req/s  server CPU %3s%%\n' \
				"$round" "$ROUNDS" "$key" "$srv" "$WRK_RPS" "${CPU[$key,$srv]##* }" >&2
		done
	done
done

# Stop both before reporting: a server that crashed or did not shut down
# cleanly makes the numbers suspect.
rc=0
stop_ringtls || rc=$?
((rc == 0)) || die "ringtls exited with status $rc on SIGTERM (log: KEEP_TMP=1 keeps $TMP)"
stop_nginx || rc=$?
((rc == 0)) || die "nginx exited with status $rc on SIGTERM"

OUTPUT=$(report)
echo
printf '%s\n' "$OUTPUT"
if ((NO_REPORT == 0)); then
	mkdir -p "$BENCH_DIR/results"
	REPORT_FILE="$BENCH_DIR/results/$(date -u +%F).md"
	printf '%s\n' "$OUTPUT" >"$REPORT_FILE.tmp"
	mv -f "$REPORT_FILE.tmp" "$REPORT_FILE"
	echo
	echo "report: ${REPORT_FILE#"$REPO_DIR"/}"
fi
