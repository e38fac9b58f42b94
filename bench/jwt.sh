#!/usr/bin/env bash
# The cost of OAuth2 JWT validation: `asap serve` with and without `--oauth2-jwks-uri`,
# same load (wrk -t1, fresh envelopes, concurrency 50), loopback only.
#
#   bench/jwt.sh            # prints the row;  DURATION=10 by default
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-10}"
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 1; }
PY="$(scripts/ref-venv.sh)"
cargo build --release -q -p asap-cli
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
TOKEN="$("$PY" bench/jwt_setup.py "$WORK")"
JWKS_PORT=$(port); OFF_PORT=$(port); ON_PORT=$(port)
(cd "$WORK" && "$PY" -m http.server "$JWKS_PORT" --bind 127.0.0.1 >/dev/null 2>&1) & PIDS+=($!)
target/release/asap serve --port "$OFF_PORT" --echo-only --storage memory --rate-limit off --data-dir "$WORK/off" >/dev/null & PIDS+=($!)
target/release/asap serve --port "$ON_PORT" --echo-only --storage memory --rate-limit off --data-dir "$WORK/on" \
  --oauth2-jwks-uri "http://127.0.0.1:$JWKS_PORT/jwks.json" >/dev/null & PIDS+=($!)
for p in "$OFF_PORT" "$ON_PORT" "$JWKS_PORT"; do
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
done
run() { wrk -t1 -c50 -d"${DURATION}s" -s bench/envelope.lua "$@" 2>&1 | grep '^BENCH'; }
OFF=$(run "http://127.0.0.1:$OFF_PORT")
ON=$(run -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ON_PORT")
rps() { sed -E 's/.*rps=([0-9.]+).*/\1/' <<<"$1"; }
p99() { sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$1"; }
echo "| c=50 | JWT off | JWT on (RS256, JWKS cached) | cost |"
echo "|---|---|---|---|"
awk -v off="$(rps "$OFF")" -v on="$(rps "$ON")" -v p99off="$(p99 "$OFF")" -v p99on="$(p99 "$ON")" \
  'BEGIN { printf "| requests/s (p99 ms) | %.0f (%.2f) | %.0f (%.2f) | %.1f %% |\n", off, p99off, on, p99on, 100 * (1 - on / off) }'
grep -q 'non2xx_or_error_bodies=0' <<<"$ON" || { echo "bench: the JWT run had failed requests: $ON" >&2; exit 1; }
