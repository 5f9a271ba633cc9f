#!/usr/bin/env bash
# Mixed load against one ringtls for MINUTES (tests/soak/soak.py): plaintext,
# TLS, files, handshakes, pipelining, abrupt disconnects, curl, s_client.
# Fails on any unexpected response, fd growth, RSS growth over 10%, or a
# server error. The binary: $RINGTLS_BIN, else BUILD_DIR/ringtls, else build/.
#   scripts/soak.sh [MINUTES] [BUILD_DIR]     (default 10 minutes)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
minutes=${1:-10}
dir=${2:-$src/build}
export RINGTLS_BIN=${RINGTLS_BIN:-$dir/ringtls}
exec python3 "$src/tests/soak/soak.py" --minutes "$minutes" ${SOAK_ARGS:-}
