#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   formatting, clippy (all targets, all features, warnings are errors), doc tests,
#   line coverage (when cargo-llvm-cov is installed, or always with CI=true), and
#   every unit, integration, property and cross-implementation test under nextest.
#
# The cross-implementation tests create a Python >= 3.13 virtualenv with the
# reference implementation (asap-protocol 1.1.0 from PyPI) on first use.
#
#   scripts/test.sh                  # everything
#   ASAP_COVERAGE=0 scripts/test.sh  # skip the coverage pass
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "reference virtualenv"
scripts/ref-venv.sh

step "rustfmt"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "doc tests"
cargo test --workspace --all-features --doc

want_coverage="${ASAP_COVERAGE:-auto}"
if [ "$want_coverage" = auto ]; then
  if [ "${CI:-}" = true ] || cargo llvm-cov --version >/dev/null 2>&1; then want_coverage=1; else want_coverage=0; fi
fi
if [ "$want_coverage" = 1 ]; then
  step "line coverage (cargo llvm-cov)"
  scripts/coverage.sh
fi

step "tests (nextest)"
cargo nextest run --workspace --all-features --no-fail-fast
