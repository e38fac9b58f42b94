#!/usr/bin/env bash
# WebSocket benchmark: echo over 1, 10 and 50 connections (closed loop, one request in
# flight per connection) against the reference echo agent (asap-protocol 1.1.0, message
# limit raised), `asap serve` (limit off) and a bare axum WebSocket echo, with the Rust
# load client in bench/wsload, all on loopback and in one run.
#
#   bench/ws.sh               # prints the table;  DURATION=10 by default
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-10}"
CONNECTIONS=(1 10 50)
PY="$(scripts/ref-venv.sh)"
cargo build --release -q -p asap-cli
(cd bench/baseline && cargo build --release -q)
(cd bench/wsload && cargo build --release -q)
LOAD=bench/wsload/target/release/asap-bench-wsload

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_up() {
  for _ in $(seq 1 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "bench: $1 did not come up" >&2; exit 1
}

REF_PORT=$(free_port); RS_PORT=$(free_port); BASE_PORT=$(free_port)
"$PY" bench/ref_ws_agent.py "$REF_PORT" >/dev/null 2>&1 & PIDS+=($!)
DATA="$(mktemp -d)"
target/release/asap serve --port "$RS_PORT" --echo-only --storage memory --rate-limit off \
  --ws-rate-limit 0 --data-dir "$DATA" >/dev/null & PIDS+=($!)
bench/baseline/target/release/asap-bench-baseline "$BASE_PORT" >/dev/null & PIDS+=($!)
wait_up "http://127.0.0.1:$REF_PORT/health"; wait_up "http://127.0.0.1:$RS_PORT/health"
sleep 1

declare -A MPS P50 P99
for name in ref rs base; do
  case $name in ref) port=$REF_PORT;; rs) port=$RS_PORT;; base) port=$BASE_PORT;; esac
  "$LOAD" "ws://127.0.0.1:$port/asap/ws" 1 1 >/dev/null   # warm-up
  for c in "${CONNECTIONS[@]}"; do
    line=$("$LOAD" "ws://127.0.0.1:$port/asap/ws" "$c" "$DURATION")
    echo "bench: $name c=$c $line" >&2
    grep -q ' errors=0$' <<<"$line" || { echo "bench: $name c=$c had errors: $line" >&2; exit 1; }
    MPS[$name,$c]=$(sed -E 's/.*msgs_per_s=([0-9.]+).*/\1/' <<<"$line")
    P50[$name,$c]=$(sed -E 's/.*p50_ms=([0-9.]+).*/\1/' <<<"$line")
    P99[$name,$c]=$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$line")
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'; }
echo "| connections | server | messages/s | p50 ms | p99 ms |"
echo "|---|---|---|---|---|"
for c in "${CONNECTIONS[@]}"; do
  for name in ref rs base; do
    label=$([ $name = ref ] && echo "reference 1.1.0" || ([ $name = rs ] && echo "asap serve" || echo "bare axum WebSocket echo"))
    echo "| $c | $label | ${MPS[$name,$c]} | ${P50[$name,$c]} | ${P99[$name,$c]} |"
  done
done
echo
echo "| connections | asap/reference messages/s | asap/bare axum messages/s | asap/reference p99 |"
echo "|---|---|---|---|"
for c in "${CONNECTIONS[@]}"; do
  echo "| $c | $(ratio "${MPS[rs,$c]}" "${MPS[ref,$c]}") | $(ratio "${MPS[rs,$c]}" "${MPS[base,$c]}") | $(ratio "${P99[rs,$c]}" "${P99[ref,$c]}") |"
done
