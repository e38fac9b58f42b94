#!/usr/bin/env bash
# Creates (or reuses) the Python virtualenv holding a reference implementation from
# PyPI, used by the cross-implementation tests: asap-protocol 1.1.0 (the 1.1 dialect,
# the default) or 2.5.10 (the 2.x dialect, docs/asap-2.md).
#
#   scripts/ref-venv.sh            # 1.1.0; prints the venv's python path on stdout
#   scripts/ref-venv.sh 2.5.10     # the same for 2.5.10 (scripts/ref25-venv.sh)
#
# Location: $ASAP_REF_VENV (1.1.0) or $ASAP_REF25_VENV (2.5.10), else target/ref-venv or
# target/ref25-venv in the workspace.
# Interpreter: $ASAP_REF_PYTHON, else the newest pyenv 3.13+, else python3.13/3.14 on PATH.
# Idempotent: a venv whose stamp matches its pinned requirements (interop/requirements.txt,
# interop/requirements-2.5.10.txt) is reused as is.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="${1:-1.1.0}"
case "$VERSION" in
  1.1.0)
    NAME=ref-venv
    REQS="$ROOT/interop/requirements.txt"
    VENV="${ASAP_REF_VENV:-$ROOT/target/ref-venv}"
    # Pre-release pins pip only takes when named.
    PRE='^opentelemetry-instrumentation-(fastapi|httpx)=='
    ;;
  2.5.10)
    NAME=ref25-venv
    REQS="$ROOT/interop/requirements-2.5.10.txt"
    VENV="${ASAP_REF25_VENV:-$ROOT/target/ref25-venv}"
    PRE='^opentelemetry-instrumentation(-[a-z]+)?=='
    ;;
  *)
    printf 'ref-venv: unknown reference version %s (1.1.0 or 2.5.10)\n' "$VERSION" >&2
    exit 2
    ;;
esac
VPY="$VENV/bin/python"
STAMP="$VENV/.stamp"

say() { printf '%s: %s\n' "$NAME" "$*" >&2; }
die() { say "error: $*"; exit 1; }

usable() { [ -x "$1" ] && "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 13) else 1)' 2>/dev/null; }

pick_python() {
  if [ -n "${ASAP_REF_PYTHON:-}" ]; then
    usable "$ASAP_REF_PYTHON" || die "ASAP_REF_PYTHON=$ASAP_REF_PYTHON is not Python >= 3.13"
    echo "$ASAP_REF_PYTHON"; return
  fi
  local root="${PYENV_ROOT:-$HOME/.pyenv}" p
  for p in $(ls -1d "$root"/versions/3.* 2>/dev/null | sort -t. -k2,2nr -k3,3nr) ; do
    usable "$p/bin/python3" && { echo "$p/bin/python3"; return; }
  done
  for p in python3.13 python3.14 python3; do
    p="$(command -v "$p" || true)"
    [ -n "$p" ] && usable "$p" && { echo "$p"; return; }
  done
  die "no Python >= 3.13 found (set ASAP_REF_PYTHON, or install one with pyenv)"
}

mkdir -p "$(dirname "$VENV")"
# One creator at a time: parallel test processes may all ask for the venv at once.
exec 9>"$VENV.lock"
flock 9

want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && usable "$VPY"; then
  echo "$VPY"; exit 0
fi

rm -rf "$VENV"
PY="$(pick_python)"
say "creating $VENV with $("$PY" -V 2>&1)"
"$PY" -m venv "$VENV"
unset PIP_FIND_LINKS PIP_NO_INDEX PIP_USER || true
export PIP_DISABLE_PIP_VERSION_CHECK=1
pre=$(grep -E "$PRE" "$REQS")
# shellcheck disable=SC2086
"$VPY" -m pip install --quiet -c "$REQS" $pre
"$VPY" -m pip install --quiet -r "$REQS"
"$VPY" -m pip check >&2
"$VPY" -c "import importlib.metadata as m; v = m.version('asap-protocol'); assert v == '$VERSION', v" \
  || die "asap-protocol $VERSION did not install"
echo "$want" > "$STAMP"
say "ready: asap-protocol $VERSION on $("$VPY" -V 2>&1)"
echo "$VPY"
