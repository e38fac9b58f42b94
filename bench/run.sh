#!/usr/bin/env bash
# Load benchmark: `asap serve` against the reference echo agent (asap-protocol 1.1.0)
# and a bare axum baseline, driven by the same wrk script (fresh envelope id and
# timestamp on every request) at concurrency 1, 10 and 50, all on loopback.
#
#   bench/run.sh                 # prints the table
#   bench/run.sh --write         # also writes bench/RESULTS.md
#   DURATION=10 bench/run.sh     # seconds per run (default 10)
#
# Needs wrk (apt-get install wrk) and the reference virtualenv (scripts/ref-venv.sh).
# Every run is bounded by DURATION; every server is stopped on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-10}"
CONCURRENCY=(1 10 50)
WRITE=0
[ "${1:-}" = "--write" ] && WRITE=1

command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 1; }
PY="$(scripts/ref-venv.sh)"
cargo build --release -q -p asap-cli
(cd bench/baseline && cargo build --release -q)

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_up() {  # wait_up URL
  for _ in $(seq 1 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "bench: $1 did not come up" >&2; exit 1
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

REF_PORT=$(free_port); RS_PORT=$(free_port); BASE_PORT=$(free_port)
ASAP_RATE_LIMIT="1000000/second" "$PY" -m asap.examples.echo_agent --host 127.0.0.1 --port "$REF_PORT" >/dev/null 2>&1 &
PIDS+=($!); REF_PID=$!
DATA="$(mktemp -d)"
target/release/asap serve --port "$RS_PORT" --echo-only --storage memory --rate-limit "1000000/second" --data-dir "$DATA" >/dev/null &
PIDS+=($!); RS_PID=$!
bench/baseline/target/release/asap-bench-baseline "$BASE_PORT" >/dev/null &
PIDS+=($!); BASE_PID=$!
wait_up "http://127.0.0.1:$REF_PORT/health"; wait_up "http://127.0.0.1:$RS_PORT/health"
sleep 1

# Every server must answer the benchmark body with a JSON-RPC result, not an error.
for port in "$REF_PORT" "$RS_PORT" "$BASE_PORT"; do
  body=$(wrk -t1 -c1 -d1s -s bench/envelope.lua "http://127.0.0.1:$port" >/dev/null 2>&1; \
    curl -s -X POST "http://127.0.0.1:$port/asap" -H 'content-type: application/json' \
    -d "{\"jsonrpc\":\"2.0\",\"method\":\"asap.send\",\"params\":{\"envelope\":{\"asap_version\":\"0.1\",\"sender\":\"urn:asap:agent:bench-client\",\"recipient\":\"urn:asap:agent:echo-agent\",\"payload_type\":\"task.request\",\"payload\":{\"conversation_id\":\"c\",\"skill_id\":\"echo\",\"input\":{\"message\":\"hello\"}}}},\"id\":\"req-0\"}")
  case "$body" in *'"result"'*) ;; *) echo "bench: port $port answered $body" >&2; exit 1 ;; esac
done

declare -A IDLE
IDLE[ref]=$(rss_kb "$REF_PID"); IDLE[rs]=$(rss_kb "$RS_PID"); IDLE[base]=$(rss_kb "$BASE_PID")

declare -A RPS P50 P99 LOADRSS
for name in ref rs base; do
  case $name in ref) port=$REF_PORT pid=$REF_PID;; rs) port=$RS_PORT pid=$RS_PID;; base) port=$BASE_PORT pid=$BASE_PID;; esac
  for c in "${CONCURRENCY[@]}"; do
    line=$(wrk -t1 -c"$c" -d"${DURATION}s" --timeout 10s -s bench/envelope.lua "http://127.0.0.1:$port" 2>&1 | grep '^BENCH')
    RPS[$name,$c]=$(sed -E 's/.*rps=([0-9.]+).*/\1/' <<<"$line")
    P50[$name,$c]=$(sed -E 's/.*p50_ms=([0-9.]+).*/\1/' <<<"$line")
    P99[$name,$c]=$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$line")
    LOADRSS[$name,$c]=$(rss_kb "$pid")
    echo "bench: $name c=$c $line" >&2
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
{
  echo "| concurrency | server | requests/s | p50 ms | p99 ms | RSS under load MB |"
  echo "|---|---|---|---|---|---|"
  for c in "${CONCURRENCY[@]}"; do
    for name in ref rs base; do
      label=$([ $name = ref ] && echo "reference 1.1.0" || ([ $name = rs ] && echo "asap serve" || echo "bare axum baseline"))
      echo "| $c | $label | ${RPS[$name,$c]} | ${P50[$name,$c]} | ${P99[$name,$c]} | $(mb "${LOADRSS[$name,$c]}") |"
    done
  done
  echo
  echo "| ratio | c=1 | c=10 | c=50 |"
  echo "|---|---|---|---|"
  echo "| requests/s, asap ÷ reference | $(ratio "${RPS[rs,1]}" "${RPS[ref,1]}") | $(ratio "${RPS[rs,10]}" "${RPS[ref,10]}") | $(ratio "${RPS[rs,50]}" "${RPS[ref,50]}") |"
  echo "| requests/s, asap ÷ baseline | $(ratio "${RPS[rs,1]}" "${RPS[base,1]}") | $(ratio "${RPS[rs,10]}" "${RPS[base,10]}") | $(ratio "${RPS[rs,50]}" "${RPS[base,50]}") |"
  echo "| p99, asap ÷ reference | $(ratio "${P99[rs,1]}" "${P99[ref,1]}") | $(ratio "${P99[rs,10]}" "${P99[ref,10]}") | $(ratio "${P99[rs,50]}" "${P99[ref,50]}") |"
  echo
  echo "Idle RSS: reference $(mb "${IDLE[ref]}") MB, asap serve $(mb "${IDLE[rs]}") MB ($(ratio "${IDLE[rs]}" "${IDLE[ref]}") of the reference), baseline $(mb "${IDLE[base]}") MB."
} > "$DATA/table.md"
cat "$DATA/table.md"
if [ "$WRITE" = 1 ]; then
  {
    echo "# Load benchmark results"
    echo
    echo "\`bench/run.sh --write\` on $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m); wrk -t1, ${DURATION} s per run, loopback."
    echo "Servers: the reference echo agent (\`python -m asap.examples.echo_agent\`, asap-protocol 1.1.0, Python $("$PY" -c 'import sys; print(sys.version.split()[0])'), rate limit raised),"
    echo "\`asap serve --echo-only --storage memory --rate-limit 1000000/second\` (full validation, rate limiting and metrics on), and the bare axum baseline (\`bench/baseline\`)."
    echo "Every request carries a fresh envelope id and timestamp (\`bench/envelope.lua\`)."
    echo
    cat "$DATA/table.md"
  } > bench/RESULTS.md
  echo "bench: wrote bench/RESULTS.md" >&2
fi
