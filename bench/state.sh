#!/usr/bin/env bash
# State backends under load: `task.request` (echo skill) at concurrency 50, wrk -t1,
# every server in one run on this machine, loopback only:
#   reference   the reference echo agent (asap-protocol 1.1.0, rate limit raised)
#   default     `asap serve` as it starts by default: SQLite state, the full agent
#               (only --rate-limit off, so wrk is not refused)
#   memory      the same binary with --storage memory
#   postgres    --storage postgres (one replica; PostgreSQL on a Unix socket with its
#               default durability: fsync on, synchronous_commit on)
#   pg+redis    postgres, plus Redis for the replay guard and rate limit
#               (--reject-repeated-ids, --rate-limit 1000000/second: two Redis round
#               trips per request)
#   2 replicas  two pg+redis replicas behind HAProxy (round-robin)
#
#   bench/state.sh            # prints the table
#   bench/state.sh --write    # also writes its section of bench/RESULTS.md
#   DURATION=10 bench/state.sh
#
# Needs wrk, haproxy, redis-server, postgresql (Debian packages) and the reference
# virtualenv (scripts/ref-venv.sh). Every run is bounded by DURATION; every process is
# stopped on exit. Ports: every server binds 127.0.0.1:0 itself and announces its URL.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-10}"
WRITE=0
[ "${1:-}" = "--write" ] && WRITE=1
for tool in wrk haproxy redis-server; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install $tool)" >&2; exit 1; }
done
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "bench: PostgreSQL is missing (apt-get install postgresql)" >&2; exit 1; }
PY="$(scripts/ref-venv.sh)"
cargo build --release -q -p asap-cli
ASAP=target/release/asap

WORK="$(mktemp -d)"
chmod 711 "$WORK"  # PostgreSQL runs as its own user when this script runs as root
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# announced LOGFILE: waits for "listening on URL" in LOGFILE and prints URL.
announced() {
  for _ in $(seq 1 300); do
    url=$(grep -o 'listening on http://[0-9.:]*' "$1" 2>/dev/null | head -1 | sed 's/listening on //')
    [ -n "$url" ] && { echo "$url"; return 0; }
    sleep 0.1
  done
  echo "bench: no URL announced in $1" >&2; cat "$1" >&2; exit 1
}
# serve NAME ARGS...: starts `asap serve --port 0 ARGS`; sets URL and PID.
serve() {
  local name=$1; shift
  mkdir -p "$WORK/$name"
  "$ASAP" serve --port 0 --data-dir "$WORK/$name" "$@" >"$WORK/$name.log" 2>&1 &
  PID=$!
  PIDS+=("$PID"); SERVERS+=("$PID")
  URL=$(announced "$WORK/$name.log")
}
stop_all_servers() {  # stops the asap servers started so far (not PostgreSQL, Redis)
  for p in "${SERVERS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  SERVERS=()
}
as_pg() { if [ "$(id -u)" = 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi; }

# PostgreSQL, with its default durability (fsync, synchronous_commit on).
PGDIR="$WORK/pg"; mkdir -p "$PGDIR"; [ "$(id -u)" = 0 ] && chown postgres "$PGDIR"
as_pg "$PGBIN/initdb" -A trust -U asap -E UTF8 --locale=C -D "$PGDIR/data" >/dev/null
as_pg "$PGBIN/postgres" -D "$PGDIR/data" -k "$PGDIR" -c listen_addresses= -c max_connections=200 >"$WORK/pg.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do as_pg "$PGBIN/pg_isready" -q -h "$PGDIR" && break; sleep 0.1; done
as_pg "$PGBIN/createdb" -h "$PGDIR" -U asap bench
DB="postgres://asap@localhost/bench?host=$PGDIR"
# Redis on a Unix socket, no persistence (it holds short-lived keys only).
redis-server --port 0 --unixsocket "$WORK/redis.sock" --save '' --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do grep -qs "Ready to accept" "$WORK/redis.log" && break; sleep 0.1; done
REDIS="redis+unix://$WORK/redis.sock"

# run LABEL URL: one wrk run at c=50; records requests/s, p50, p99, RSS.
declare -A RPS P50 P99 RSS
ORDER=()
run() {
  local label=$1 url=$2 pid=${3:-}
  local check
  check=$(curl -s -X POST "$url/asap" -H 'content-type: application/json' \
    -d '{"jsonrpc":"2.0","method":"asap.send","params":{"envelope":{"asap_version":"0.1","sender":"urn:asap:agent:bench-client","recipient":"urn:asap:agent:echo-agent","payload_type":"task.request","payload":{"conversation_id":"c","skill_id":"echo","input":{"message":"hello"}}}},"id":"req-0"}')
  case "$check" in *'"result"'*) ;; *) echo "bench: $label answered $check" >&2; exit 1 ;; esac
  local line
  line=$(wrk -t1 -c50 -d"${DURATION}s" --timeout 10s -s bench/envelope.lua "$url" 2>&1 | grep '^BENCH')
  echo "bench: $label $line" >&2
  case "$line" in *non2xx_or_error_bodies=0*) ;; *) echo "bench: $label answered errors under load" >&2; exit 1 ;; esac
  RPS[$label]=$(sed -E 's/.*rps=([0-9.]+).*/\1/' <<<"$line")
  P50[$label]=$(sed -E 's/.*p50_ms=([0-9.]+).*/\1/' <<<"$line")
  P99[$label]=$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$line")
  RSS[$label]=$([ -n "$pid" ] && awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$pid/status" || echo "-")
  ORDER+=("$label")
}

ASAP_RATE_LIMIT="1000000/second" "$PY" interop/ref_echo_agent.py >"$WORK/ref.log" 2>&1 &
PIDS+=($!); REF_PID=$!
REF_URL=$(announced "$WORK/ref.log")
run "reference 1.1.0 echo agent" "$REF_URL" "$REF_PID"
kill "$REF_PID"

SERVERS=()
serve default --rate-limit off
run "asap serve (default: SQLite)" "$URL" "$PID"; stop_all_servers
serve memory --rate-limit off --storage memory
run "asap serve --storage memory" "$URL" "$PID"; stop_all_servers
serve pg --rate-limit off --storage postgres --database-url "$DB"
run "postgres, 1 replica" "$URL" "$PID"; stop_all_servers
redis_flags=(--storage postgres --database-url "$DB" --redis-url "$REDIS" --reject-repeated-ids --rate-limit 1000000/second)
serve pgredis "${redis_flags[@]}" --redis-key-prefix "bench1:"
run "postgres + Redis, 1 replica" "$URL" "$PID"; stop_all_servers
serve r1 "${redis_flags[@]}" --redis-key-prefix "bench2:"; a=$URL
serve r2 "${redis_flags[@]}" --redis-key-prefix "bench2:"; b=$URL
# HAProxy on a socket this script's Python binds (127.0.0.1:0) and hands over (fd@N).
cat >"$WORK/lb.py" <<PYEOF
import os, socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1024); os.set_inheritable(s.fileno(), True)
cfg = f"""global
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend agents
  bind fd@{s.fileno()}
  default_backend replicas
backend replicas
  balance roundrobin
  server r1 ${a#http://}
  server r2 ${b#http://}
"""
open("$WORK/haproxy.cfg", "w").write(cfg)
print(f"listening on http://127.0.0.1:{s.getsockname()[1]}", flush=True)
os.execvp("haproxy", ["haproxy", "-db", "-f", "$WORK/haproxy.cfg"])
PYEOF
python3 "$WORK/lb.py" >"$WORK/lb.log" 2>&1 &
PIDS+=($!); SERVERS+=($!)
run "postgres + Redis, 2 replicas behind HAProxy" "$(announced "$WORK/lb.log")"
stop_all_servers

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'; }
REF="reference 1.1.0 echo agent"; DEF="asap serve (default: SQLite)"; MEM="asap serve --storage memory"
{
  echo "| server (c=50) | requests/s | p50 ms | p99 ms | RSS MB | ÷ reference |"
  echo "|---|---|---|---|---|---|"
  for label in "${ORDER[@]}"; do
    echo "| $label | ${RPS[$label]} | ${P50[$label]} | ${P99[$label]} | ${RSS[$label]} | $(ratio "${RPS[$label]}" "${RPS[$REF]}") |"
  done
  echo
  echo "Default (SQLite) ÷ memory: $(ratio "${RPS[$DEF]}" "${RPS[$MEM]}") (target ≥ 0.50); default ÷ reference: $(ratio "${RPS[$DEF]}" "${RPS[$REF]}") (target ≥ 40)."
} >"$WORK/table.md"
cat "$WORK/table.md"
if [ "$WRITE" = 1 ]; then
  {
    echo "<!-- bench/state.sh begin -->"
    echo "## State backends: \`task.request\` at concurrency 50"
    echo
    echo "\`bench/state.sh --write\` on $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m); wrk -t1 -c50, ${DURATION} s per run, loopback; PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') and Redis $(redis-server --version | sed -E 's/.*v=([0-9.]+).*/\1/') on Unix sockets."
    echo "Every request is a \`task.request\` for the echo skill with a fresh envelope id and timestamp (\`bench/envelope.lua\`)."
    echo
    cat "$WORK/table.md"
    echo "<!-- bench/state.sh end -->"
  } >"$WORK/section.md"
  python3 - "$WORK/section.md" bench/RESULTS.md <<'PYEOF'
import re, sys
section = open(sys.argv[1]).read().rstrip() + "\n"
results = open(sys.argv[2]).read()
pattern = re.compile(r"<!-- bench/state.sh begin -->.*?<!-- bench/state.sh end -->\n", re.S)
results = pattern.sub(lambda _: section, results) if pattern.search(results) else results.rstrip() + "\n\n" + section
open(sys.argv[2], "w").write(results)
PYEOF
  echo "bench: wrote its section of bench/RESULTS.md" >&2
fi
