#!/usr/bin/env bash
# Webhook delivery throughput through the durable SQLite queue: N deliveries queued with
# `asap webhook enqueue`, then sent by `asap webhook deliver --until-empty` to the bare
# axum receiver of bench/baseline on loopback (per-URL rate limit raised so the queue,
# not the limiter, is measured). Prints the enqueue and delivery rates.
#
#   bench/webhooks.sh            # N=5000 by default
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
N="${N:-5000}"
cargo build --release -q -p asap-cli
(cd bench/baseline && cargo build --release -q)
PY="$(scripts/ref-venv.sh)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
bench/baseline/target/release/asap-bench-baseline "$PORT" >/dev/null & PIDS+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null -X POST "http://127.0.0.1:$PORT/asap" -d '{}' && break; sleep 0.1; done
DATA="$(mktemp -d)"
LOOP=(--allow-http --allow-private 127.0.0.1/32 --data-dir "$DATA")
t0=$(date +%s.%N)
target/release/asap webhook enqueue "http://127.0.0.1:$PORT/asap" --payload '{"event":"task.completed","task_id":"t","data":{"n":1}}' \
  --secret bench-secret --count "$N" "${LOOP[@]}" >/dev/null
t1=$(date +%s.%N)
target/release/asap webhook deliver --until-empty --per-url-rate 1000000 --max-in-flight 64 "${LOOP[@]}" 2>/dev/null
t2=$(date +%s.%N)
DEAD=$(target/release/asap webhook dead-letters --data-dir "$DATA" | wc -l)
[ "$DEAD" = 0 ] || { echo "bench: $DEAD deliveries failed" >&2; exit 1; }
awk -v n="$N" -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN {
  printf "| deliveries | enqueue /s | delivered /s (queue on SQLite, 64 in flight) |\n|---|---|---|\n"
  printf "| %d | %.0f | %.0f |\n", n, n / (b - a), n / (c - b) }'
