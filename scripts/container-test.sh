#!/usr/bin/env bash
# Builds the asap container image FROM scratch with rootful podman, runs it, and checks
# it serves: GET /health through the published port, a JSON-RPC task.request on /asap,
# the image's HEALTHCHECK, a clean stop on SIGTERM, and the SQLite state in /data.
#
#   scripts/container-test.sh PATH_TO_STATIC_ASAP_BINARY
#
# Self-test of the podman mechanics without an asap binary: the same image with
# Debian's static busybox as /asap, run as `busybox httpd` (busybox bind-mounted under
# its own name) instead of `asap serve`; no task.request check, and a busybox wget
# health command instead of the image's:
#
#   ASAP_CONTAINER_SELFTEST=busybox scripts/container-test.sh [PATH_TO_STATIC_BUSYBOX]
#
# Other settings (environment):
#   ASAP_CONTAINER_PORT=N   publish on 127.0.0.1:N instead of a free port podman picks
#   ASAP_CONTAINER_KEEP=1   keep the temporary directory (podman store, logs) for a look
#
# Needs root (rootful podman). Installs podman and what it needs with apt-get when
# missing. Everything podman writes (image store, runtime state, locks, events,
# network config) goes to a temporary directory removed on exit; the few system paths
# podman insists on (see cleanup_system_paths) are removed again if this run made them.
#
# What the configuration works around, on a VM with hybrid cgroups (v1 controllers
# plus a cgroup2 mount) and no CAP_SYS_RESOURCE, no systemd, podman 4.3 (bookworm):
#   - crun refuses hybrid cgroups ("cgroups in hybrid mode not supported, drop all
#     controllers from cgroupv2"), and `--cgroups=disabled` needs crun: runc it is,
#     with the cgroupfs manager under a cgroup parent of our own, removed on exit.
#   - podman asks the runtime for RLIMIT_NOFILE/NPROC = 1048576, which it cannot
#     raise to ("setrlimit `RLIMIT_NOFILE`: Operation not permitted"): default_ulimits
#     no higher than ours in the containers.conf written here.
#   - bridge networking (netavark) works but edits the host's iptables, adds a
#     podman0 bridge and sets net.ipv4.ip_forward=1: slirp4netns leaves all of that alone.
#   - HEALTHCHECK is only kept in the docker image format (`--format docker`); with no
#     systemd there is no healthcheck timer, so the check is run by hand
#     (`podman healthcheck run`), and podman's "unable to get systemd connection"
#     complaints about the timer are filtered from its output.
set -euo pipefail

SELFTEST="${ASAP_CONTAINER_SELFTEST:-}"
PUBLISH_PORT="${ASAP_CONTAINER_PORT:-}"  # empty: podman picks a free one
CONTAINER_PORT=8000                      # the port asap listens on in the image
HEALTH_TIMEOUT_S=30                      # how long to wait for GET /health
WORK=""                                  # temporary directory, set by setup_workdir
CGROUP_NAME=""                           # our cgroup parent, set by setup_workdir
IMAGE=""
CONTAINER=""
ABSENT_SYSTEM_PATHS=()                   # system paths that did not exist when we started

say() { printf '==> %s\n' "$*"; }
die() { printf 'container-test: FAILED: %s\n' "$*" >&2; exit 1; }

usage() {
  echo "usage: $0 PATH_TO_STATIC_ASAP_BINARY" >&2
  echo "       ASAP_CONTAINER_SELFTEST=busybox $0 [PATH_TO_STATIC_BUSYBOX]" >&2
  exit 2
}

# --- the JSON-RPC check -------------------------------------------------------------
# Kept apart so the request and the expected reply are easy to adjust.

task_request_body() {
  cat <<'JSON'
{"jsonrpc":"2.0","method":"asap.send","params":{"envelope":{"asap_version":"0.1","sender":"urn:asap:agent:client","recipient":"urn:asap:agent:asap-rs","payload_type":"task.request","payload":{"conversation_id":"c1","skill_id":"echo","input":{"message":"hi"}}}},"id":"1"}
JSON
}

# check_task_request BASE_URL: POSTs the task.request to BASE_URL/asap and expects a
# 200 whose body carries a task.response envelope.
check_task_request() {
  local url="$1/asap" status reply
  status=$(curl -sS -m 10 -o "$WORK/reply.json" -w '%{http_code}' \
    -H 'Content-Type: application/json' --data-binary "$(task_request_body)" "$url") \
    || die "POST $url: curl failed"
  reply=$(cat "$WORK/reply.json")
  echo "    reply ($status): $reply"
  [ "$status" = 200 ] || die "POST $url answered HTTP $status"
  grep -Eq '"payload_type"[[:space:]]*:[[:space:]]*"task\.response"' <<<"$reply" \
    || die "POST $url: no \"payload_type\":\"task.response\" in the reply"
}

# --- packages ------------------------------------------------------------------------

# Installs, with apt-get, whatever of podman and its helpers is missing: runc (crun
# fails on hybrid cgroups), slirp4netns (the network), netavark (podman's network
# backend), curl (the checks), and busybox-static for the self-test without a path.
ensure_packages() {
  local want=(podman runc slirp4netns netavark curl) missing=() p
  if [ "$SELFTEST" = busybox ] && [ -z "${BIN:-}" ]; then want+=(busybox-static); fi
  if ! command -v dpkg-query >/dev/null; then
    for p in podman runc slirp4netns curl; do
      command -v "$p" >/dev/null || die "$p is needed (no dpkg here to install it)"
    done
    return
  fi
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return
  say "installing ${missing[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- podman in a temporary directory ---------------------------------------------------

# Notes which system paths podman may create (and we then remove) are absent now.
note_system_paths() {
  local p
  for p in /run/netns /run/containers /run/libpod /run/runc /run/mount /var/lib/containers; do
    [ -e "$p" ] || ABSENT_SYSTEM_PATHS+=("$p")
  done
}

setup_workdir() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/asap-container-test.XXXXXXXX")
  local id="${WORK##*.}"
  id=$(tr '[:upper:]' '[:lower:]' <<<"$id")  # image names must be lower case
  CGROUP_NAME="asap-container-test-$id"
  IMAGE="localhost/asap-container-test:$id"
  CONTAINER="asap-container-test-$id"
  mkdir -p "$WORK/tmp" "$WORK/context/data"

  # Ulimits no higher than this shell's: podman's default (1048576) needs CAP_SYS_RESOURCE.
  # nproc is capped lower still: podman lowers its own NPROC limit (32768 seen here)
  # before starting the runtime, and the runtime cannot set more than it has.
  local nofile nproc
  nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] && nofile=1048576
  nproc=$(ulimit -Hu); { [ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ]; } && nproc=4096

  cat >"$WORK/containers.conf" <<EOF
[containers]
log_driver = "k8s-file"
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$WORK/events.log"
tmp_dir = "$WORK/tmp"
lock_type = "file"
volume_path = "$WORK/volumes"

[network]
network_backend = "netavark"
network_config_dir = "$WORK/networks"
EOF
  # vfs: plain copies, no mounts left behind if this script is killed mid-way.
  cat >"$WORK/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$WORK/root"
runroot = "$WORK/run"
EOF
  : >"$WORK/registries.conf"  # no registries: nothing is ever pulled
  export CONTAINERS_CONF="$WORK/containers.conf"
  export CONTAINERS_STORAGE_CONF="$WORK/storage.conf"
  export CONTAINERS_REGISTRIES_CONF="$WORK/registries.conf"
  export TMPDIR="$WORK/tmp"
}

# podman with runc's state in $WORK; stderr passed on without the systemd-timer noise.
pm() {
  local rc=0
  podman --runtime-flag "root=$WORK/runc" "$@" 2>"$WORK/podman.err" || rc=$?
  grep -v 'unable to get systemd connection' "$WORK/podman.err" >&2 || true
  return "$rc"
}

container_exists() { [ -n "$CONTAINER" ] && pm container exists "$CONTAINER" 2>/dev/null; }

show_logs() {
  container_exists || return 0
  echo "---- podman logs $CONTAINER ----" >&2
  pm logs "$CONTAINER" >&2 || true
  echo "---- end of logs ----" >&2
}

# Removes the system paths podman made although we pointed it elsewhere: the netns
# mount point, netavark's run dir, runc's default root (container cleanup), the
# blob-info cache of `podman build`. Only those absent at start; only empty dirs.
cleanup_system_paths() {
  local p
  for p in "${ABSENT_SYSTEM_PATHS[@]}"; do
    [ -e "$p" ] || continue
    if [ "$p" = /run/netns ] && [ -z "$(ls -A "$p")" ] && mountpoint -q "$p"; then umount "$p"; fi
    [ "$p" = /var/lib/containers ] && rm -f "$p/cache/blob-info-cache-v1.boltdb"
    find "$p" -depth -type d -empty -delete 2>/dev/null || true
    [ -e "$p" ] && echo "container-test: note: $p was created during the run and is not empty; left as is" >&2
  done
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    [ "$rc" -ne 0 ] && show_logs
    container_exists && pm rm -f -v -t 5 "$CONTAINER" >/dev/null
    [ -n "$IMAGE" ] && pm image exists "$IMAGE" 2>/dev/null && pm rmi -f "$IMAGE" >/dev/null
    # Our cgroup parent (and conmon's cgroup under it), in every hierarchy.
    local d
    for d in /sys/fs/cgroup/"$CGROUP_NAME" /sys/fs/cgroup/*/"$CGROUP_NAME"; do
      [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    if [ "${ASAP_CONTAINER_KEEP:-}" = 1 ]; then
      echo "container-test: kept $WORK" >&2
    else
      rm -rf "$WORK"
    fi
  fi
  cleanup_system_paths
  [ "$rc" -eq 0 ] || echo "container-test: exit status $rc" >&2
  exit "$rc"
}

# --- the image ---------------------------------------------------------------------

# The build context: the binary as `asap`, and `data/`, the state folder owned by the
# user the image runs as (scratch has no shell to mkdir/chown, hence COPY --chown).
# Unlike the Dockerfile's image there is no CA bundle: this proves the binary runs in a
# truly empty container (outgoing HTTPS then fails to verify, plain HTTP works).
write_context() {
  cp "$BIN" "$WORK/context/asap"
  chmod 0755 "$WORK/context/asap"
  if [ "$SELFTEST" = busybox ]; then echo ok >"$WORK/context/data/health"; fi  # busybox httpd serves /health
  cat >"$WORK/context/Containerfile" <<'EOF'
FROM scratch
COPY --chown=65532:65532 data/ /data/
COPY asap /asap
USER 65532:65532
ENV ASAP_HOST=0.0.0.0 ASAP_DATA_DIR=/data
EXPOSE 8000
VOLUME /data
HEALTHCHECK CMD ["/asap","health","http://127.0.0.1:8000"]
ENTRYPOINT ["/asap"]
CMD ["serve"]
EOF
}

build_image() {
  say "building $IMAGE (FROM scratch)"
  # docker format: the OCI format drops HEALTHCHECK. No network: a RUN step would
  # otherwise get a netavark bridge, which edits the host's iptables.
  pm build --format docker --network none -f "$WORK/context/Containerfile" -t "$IMAGE" "$WORK/context" >"$WORK/build.log" \
    || { cat "$WORK/build.log" >&2; die "podman build failed"; }
  local size healthcheck
  size=$(pm image inspect --format '{{.Size}}' "$IMAGE")
  echo "    image size: $size bytes ($(( (size + 524288) / 1048576 )) MiB)"
  healthcheck=$(pm image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE")
  grep -q '"/asap","health"' <<<"$healthcheck" || die "the image has no HEALTHCHECK (got: $healthcheck)"
}

# --- the container -------------------------------------------------------------------

run_container() {
  local args=(run -d --name "$CONTAINER" --cgroup-parent "/$CGROUP_NAME"
    --network slirp4netns -p "127.0.0.1:$PUBLISH_PORT:$CONTAINER_PORT"
    --health-interval disable)
  if [ "$SELFTEST" = busybox ]; then
    # busybox picks its applet from argv[0] only when that is "busybox", so it is
    # mounted under that name; the image's /asap (busybox too) is left unused.
    args+=(-v "$WORK/context/asap:/selftest/busybox:ro" --entrypoint /selftest/busybox
      --health-cmd '["/selftest/busybox","wget","-q","-O","/dev/null","http://127.0.0.1:8000/health"]'
      "$IMAGE" httpd -f -p "$CONTAINER_PORT" -h /data)
  else
    args+=("$IMAGE")
  fi
  say "running $CONTAINER"
  pm "${args[@]}" >/dev/null || die "podman run failed"
  local published
  published=$(pm port "$CONTAINER" "$CONTAINER_PORT/tcp") || die "podman port failed"
  if [ -z "$published" ]; then  # podman lists no ports for a container that has exited
    [ "$(pm inspect -f '{{.State.Running}}' "$CONTAINER")" = true ] \
      || die "the container stopped right after starting"
    die "podman port lists no published port"
  fi
  BASE_URL="http://127.0.0.1:${published##*:}"
  echo "    published: $published"
}

# Polls GET /health every 0.2 s for up to HEALTH_TIMEOUT_S, failing early if the
# container stops.
wait_healthy() {
  local deadline=$((SECONDS + HEALTH_TIMEOUT_S))
  say "waiting for $BASE_URL/health"
  while :; do
    if curl -fsS -m 1 -o /dev/null "$BASE_URL/health" 2>/dev/null; then
      echo "    up after ~$((SECONDS + HEALTH_TIMEOUT_S - deadline)) s"
      return
    fi
    [ "$(pm inspect -f '{{.State.Running}}' "$CONTAINER")" = true ] \
      || die "the container stopped before answering GET /health"
    [ "$SECONDS" -lt "$deadline" ] || die "no answer to GET $BASE_URL/health within $HEALTH_TIMEOUT_S s"
    sleep 0.2
  done
}

# The /data volume: the file the server wrote must be there, owned by 65532.
check_data_volume() {
  local file="$1" src
  src=$(pm inspect -f '{{range .Mounts}}{{if eq .Destination "/data"}}{{.Source}}{{end}}{{end}}' "$CONTAINER")
  [ -n "$src" ] || die "no volume on /data"
  [ -f "$src/$file" ] || die "/data/$file missing from the volume (it holds: $(cd "$src" && echo * .[!.]*))"
  [ "$(stat -c %u "$src/$file")" = 65532 ] || die "/data/$file is not owned by uid 65532"
  echo "    /data/$file written by uid 65532"
}

stop_container() {
  say "stopping (SIGTERM)"
  # busybox httpd as PID 1 ignores SIGTERM: no point waiting long for it.
  local grace=10; [ "$SELFTEST" = busybox ] && grace=1
  pm stop -t "$grace" "$CONTAINER" >/dev/null || die "podman stop failed"
  local code
  code=$(pm inspect -f '{{.State.ExitCode}}' "$CONTAINER")
  if [ "$SELFTEST" = busybox ]; then
    echo "    exit code $code (killed after the grace period; not checked)"
  else
    [ "$code" = 0 ] || die "asap exited with $code on SIGTERM (expected 0)"
    echo "    exit code 0"
  fi
}

# --- main ----------------------------------------------------------------------------

main() {
  case "$SELFTEST" in
    "") [ "$#" -eq 1 ] || usage; BIN="$1" ;;
    busybox) [ "$#" -le 1 ] || usage; BIN="${1:-}" ;;
    *) die "ASAP_CONTAINER_SELFTEST must be empty or 'busybox' (got '$SELFTEST')" ;;
  esac
  [ "$(id -u)" -eq 0 ] || die "needs root (rootful podman)"
  case "$PUBLISH_PORT" in *[!0-9]*) die "ASAP_CONTAINER_PORT must be a port number" ;; esac

  ensure_packages
  if [ -z "$BIN" ]; then BIN=/bin/busybox; fi
  if [ ! -f "$BIN" ] || [ ! -x "$BIN" ]; then die "$BIN: not an executable file"; fi
  # A FROM scratch image has no dynamic loader: the binary must be static.
  if command -v readelf >/dev/null && readelf -l "$BIN" 2>/dev/null | grep -q 'program interpreter'; then
    die "$BIN is dynamically linked; build it static (RUSTFLAGS='-C target-feature=+crt-static')"
  fi

  note_system_paths
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  setup_workdir
  echo "    podman $(podman --version | sed 's/.* //'), work dir $WORK"

  write_context
  build_image
  run_container
  wait_healthy
  if [ "$SELFTEST" = busybox ]; then
    say "self-test: writing /data as the image's user"
    pm exec "$CONTAINER" /selftest/busybox touch /data/probe || die "cannot write /data as uid 65532"
    check_data_volume probe
  else
    say "POST $BASE_URL/asap (task.request)"
    check_task_request "$BASE_URL"
    check_data_volume asap_state.db
  fi
  say "HEALTHCHECK (podman healthcheck run)"
  pm healthcheck run "$CONTAINER" >/dev/null || die "the container's health check failed"
  echo "    $(pm inspect -f '{{.State.Health.Status}}' "$CONTAINER")"
  stop_container
  say "container test passed${SELFTEST:+ (self-test: $SELFTEST)}"
}

main "$@"
