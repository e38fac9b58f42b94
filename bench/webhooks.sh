#!/usr/bin/env bash
# Webhook delivery throughput through the durable queue, on SQLite and on PostgreSQL: N
# deliveries queued with `asap webhook enqueue`, then sent by WORKERS processes of
# `asap webhook deliver --until-empty` (each 64 in flight, per-URL rate limit raised so
# the queue, not the limiter, is measured) to the bare axum receiver of bench/baseline on
# loopback. PostgreSQL is a private server started here (initdb in a temporary
# directory, Unix socket only, default durability settings: fsync and synchronous
# commits on), stopped at the end. Prints the enqueue and delivery rates.
#
#   bench/webhooks.sh                                 # N=5000, SQLite and PostgreSQL
#   N=20000 BACKENDS=postgres PG_WORKERS="1 2 4" bench/webhooks.sh
#   CARGO=path/to/cargo bench/webhooks.sh            # another cargo (a wrapper) to build
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
N="${N:-5000}"
BACKENDS="${BACKENDS:-sqlite postgres}"
PG_WORKERS="${PG_WORKERS:-1 2}"
CARGO="${CARGO:-cargo}"
"$CARGO" build --release -q -p asap-cli
(cd bench/baseline && "$CARGO" build --release -q)
PIDS=()
TMP="$(mktemp -d)"
cleanup() {
  # SIGTERM: background jobs of a script ignore SIGINT (the receiver would stay).
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
bench/baseline/target/release/asap-bench-baseline "$PORT" >/dev/null & PIDS+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null -X POST "http://127.0.0.1:$PORT/asap" -d '{}' && break; sleep 0.1; done
ASAP=target/release/asap
LOOP=(--allow-http --allow-private 127.0.0.1/32)

# A private PostgreSQL server (as the `postgres` user when run as root: it refuses root).
start_postgres() {
  local bin="${ASAP_PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
  AS_PG=()
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres:postgres "$TMP"
    AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  fi
  PG_BIN="$bin"
  PG_DIR="$TMP"
  "${AS_PG[@]}" "$bin/initdb" -A trust -U asap -E UTF8 --locale=C -D "$PG_DIR/data" >/dev/null
  "${AS_PG[@]}" "$bin/postgres" -D "$PG_DIR/data" -k "$PG_DIR" -c listen_addresses= \
    -c max_connections=200 >"$PG_DIR/server.log" 2>&1 & PIDS+=($!)
  for _ in $(seq 1 300); do "${AS_PG[@]}" "$bin/pg_isready" -q -h "$PG_DIR" && return 0; sleep 0.1; done
  echo "bench: postgres did not start: $(cat "$PG_DIR/server.log")" >&2
  exit 1
}

now() { date +%s.%N; }

# run BACKEND WORKERS: queue N into a fresh database, deliver with WORKERS processes.
run() {
  local backend="$1" workers="$2" where=()
  case "$backend" in
    sqlite) where=(--data-dir "$(mktemp -d -p "$TMP")") ;;
    postgres)
      local db="bench_${workers}_$RANDOM"
      "${AS_PG[@]}" "$PG_BIN/createdb" -h "$PG_DIR" -U asap "$db"
      where=(--database-url "postgres://asap@localhost/$db?host=$PG_DIR") ;;
  esac
  local t0 t1 t2 dead
  t0=$(now)
  "$ASAP" webhook enqueue "http://127.0.0.1:$PORT/asap" \
    --payload '{"event":"task.completed","task_id":"t","data":{"n":1}}' \
    --secret bench-secret --count "$N" "${LOOP[@]}" "${where[@]}" >/dev/null
  t1=$(now)
  local deliverers=()
  for _ in $(seq 1 "$workers"); do
    "$ASAP" webhook deliver --until-empty --per-url-rate 1000000 --max-in-flight 64 \
      "${LOOP[@]}" "${where[@]}" 2>/dev/null & deliverers+=($!)
  done
  wait "${deliverers[@]}"
  t2=$(now)
  dead=$("$ASAP" webhook dead-letters "${where[@]}" | wc -l)
  [ "$dead" = 0 ] || { echo "bench: $dead deliveries failed" >&2; exit 1; }
  awk -v b="$backend" -v w="$workers" -v n="$N" -v a="$t0" -v e="$t1" -v c="$t2" \
    'BEGIN { printf "| %s | %d | %d | %.0f | %.0f |\n", b, w, n, n / (e - a), n / (c - e) }'
}

printf '| queue | workers | deliveries | enqueued /s | delivered /s |\n|---|---|---|---|---|\n'
for backend in $BACKENDS; do
  case "$backend" in
    sqlite) run sqlite 1 ;;
    postgres)
      start_postgres
      for w in $PG_WORKERS; do run postgres "$w"; done ;;
    *) echo "bench: unknown backend $backend" >&2; exit 1 ;;
  esac
done
