#!/usr/bin/env bash
# The cost of OpenTelemetry export: `asap serve` (release, feature `otel`, on by default)
# with export off and with OTEL_TRACES_EXPORTER=otlp to a local sink answering 200 on
# /v1/traces; same load (wrk -t1, fresh envelopes, concurrency 50), loopback only.
# The load runs while holding the shared cargo lock, so no build competes for the CPU.
# Exits non-zero when export costs 15 % of the requests/s or more, or a request failed.
#
#   bench/otel.sh           # prints the row;  DURATION=10 s per run, ROUNDS=3 pairs
#   BENCH_LOCK=/path/lock   # a lock file concurrent builds take, held while the load runs (optional)
#   CARGO=...               # the cargo to build with (default cargo)
#   OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1 TRACEPARENT=0 \
#     bench/otel.sh         # the sampling lever: 10 % of new traces, no incoming traceparent
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
LOCK="${BENCH_LOCK:-}"
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench: python3 is missing" >&2; exit 1; }
"${CARGO:-cargo}" build --release -q -p asap-cli --features otel
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
SINK_PORT=$(port); OFF_PORT=$(port); ON_PORT=$(port)
# The collector stand-in: reads each export and answers an empty protobuf response.
cat >"$WORK/sink.py" <<'PY'
import http.server, sys, threading
count = 0
lock = threading.Lock()
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        global count
        self.rfile.read(int(self.headers.get("content-length", 0)))
        with lock:
            count += 1
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def do_GET(self):
        body = str(count).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
python3 "$WORK/sink.py" "$SINK_PORT" & PIDS+=($!)
env -u OTEL_TRACES_EXPORTER target/release/asap serve --port "$OFF_PORT" --echo-only --storage memory \
  --rate-limit off --data-dir "$WORK/off" >/dev/null & PIDS+=($!)
env OTEL_TRACES_EXPORTER=otlp OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$SINK_PORT" \
  target/release/asap serve --port "$ON_PORT" --echo-only --storage memory \
  --rate-limit off --data-dir "$WORK/on" >/dev/null & PIDS+=($!)
for p in "$OFF_PORT" "$ON_PORT" "$SINK_PORT"; do
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
done
run() { wrk -t1 -c50 -d"${DURATION}s" -s bench/envelope.lua "$@" 2>&1 | grep '^BENCH'; }
on_args=()
if [ "${TRACEPARENT:-1}" = 1 ]; then
  on_args=(-H "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
fi
# ROUNDS alternating pairs (off, on); the row takes the median run of each side, so one
# run slowed by something else on the machine does not decide the result.
if [ -n "$LOCK" ]; then exec 9>"$LOCK"; flock 9; fi
OFF_RUNS=(); ON_RUNS=()
for _ in $(seq 1 "$ROUNDS"); do
  OFF_RUNS+=("$(run "http://127.0.0.1:$OFF_PORT")")
  ON_RUNS+=("$(run "${on_args[@]}" "http://127.0.0.1:$ON_PORT")")
done
if [ -n "$LOCK" ]; then flock -u 9; fi
median() { printf '%s\n' "$@" | sort -t= -k2 -g | sed -n "$(( ($# + 1) / 2 ))p"; }
OFF=$(median "${OFF_RUNS[@]}")
ON=$(median "${ON_RUNS[@]}")
for r in "${ON_RUNS[@]}"; do
  grep -q 'non2xx_or_error_bodies=0' <<<"$r" || { echo "bench: an export run had failed requests: $r" >&2; exit 1; }
done
EXPORTS=$(curl -s "http://127.0.0.1:$SINK_PORT/")
rps() { sed -E 's/.*rps=([0-9.]+).*/\1/' <<<"$1"; }
p99() { sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$1"; }
echo "| c=50 | export off | export on (OTLP/HTTP, batch) | cost |"
echo "|---|---|---|---|"
COST=$(awk -v off="$(rps "$OFF")" -v on="$(rps "$ON")" 'BEGIN { printf "%.1f", 100 * (1 - on / off) }')
awk -v off="$(rps "$OFF")" -v on="$(rps "$ON")" -v p99off="$(p99 "$OFF")" -v p99on="$(p99 "$ON")" -v cost="$COST" \
  'BEGIN { printf "| requests/s (p99 ms) | %.0f (%.2f) | %.0f (%.2f) | %s %% |\n", off, p99off, on, p99on, cost }'
echo "(medians of $ROUNDS runs each; requests/s off: $(for r in "${OFF_RUNS[@]}"; do printf '%.0f ' "$(rps "$r")"; done)on: $(for r in "${ON_RUNS[@]}"; do printf '%.0f ' "$(rps "$r")"; done); the sink received $EXPORTS export requests)"
grep -q 'non2xx_or_error_bodies=0' <<<"$ON" || { echo "bench: the export run had failed requests: $ON" >&2; exit 1; }
[ "$EXPORTS" -gt 0 ] || { echo "bench: nothing was exported" >&2; exit 1; }
awk -v c="$COST" 'BEGIN { exit !(c < 15) }' || { echo "bench: export costs $COST % (limit 15 %)" >&2; exit 1; }
