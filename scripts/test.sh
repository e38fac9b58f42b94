#!/usr/bin/env bash
# The whole test suite, as CI runs it; on a fresh machine it first installs what it needs:
#   tools       cargo-nextest, cargo-hack, cargo-llvm-cov and Debian's llvm-19 (where
#               coverage is measured), iproute2/util-linux (the DNS-SD test's network
#               namespace), podman (the container test; scripts/container-test.sh
#               installs it), PostgreSQL, Redis and HAProxy (the store, shared-state
#               and cluster tests start their own instances in temporary directories)
#   reference   a Python >= 3.13 virtualenv with asap-protocol 1.1.0 from PyPI
# then checks formatting, clippy (all targets, all features, warnings are errors),
# fuzzes every cargo-fuzz target for a fixed time (scripts/fuzz.sh, nightly), that
# the features compose (none, each alone and every pair build without warnings; no
# tokio without features), the API docs (rustdoc, warnings are errors), the doc tests,
# that both crates package and build alone (cargo publish --dry-run), the release
# workflow (actionlint), the static release binary in a FROM-scratch container, and runs
# every unit, integration, property and cross-implementation test once under nextest,
# instrumented for line coverage where coverage is measured (nextest's summary line is
# the last thing printed).
#
#   scripts/test.sh                       # everything
#   ASAP_COVERAGE=0 scripts/test.sh       # tests without coverage instrumentation
#   ASAP_FUZZ=0 scripts/test.sh           # skip fuzzing (CI always fuzzes)
#   ASAP_RELEASE_CHECKS=0 scripts/test.sh # skip packaging, workflow lint, static binary
#                                         # and container (CI always runs them)
#
# Debian packages are installed with apt-get, which needs root (or sudo).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }
ci() { [ "${CI:-}" = true ]; }

want_coverage="${ASAP_COVERAGE:-auto}"
if [ "$want_coverage" = auto ]; then
  if ci || cargo llvm-cov --version >/dev/null 2>&1; then want_coverage=1; else want_coverage=0; fi
fi
want_release="${ASAP_RELEASE_CHECKS:-1}"
ci && want_release=1

step "tools"
scripts/install-tools.sh "$want_coverage"

step "reference virtualenv"
scripts/ref-venv.sh

step "rustfmt"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

# Early, right after clippy: the fuzz crate is outside the workspace (clippy and
# cargo hack do not build it), so an API change that breaks a harness shows here.
want_fuzz="${ASAP_FUZZ:-1}"
ci && want_fuzz=1
if [ "$want_fuzz" = 1 ]; then
  step "fuzzing (scripts/fuzz.sh, ${ASAP_FUZZ_SECONDS:-10} s per target)"
  scripts/fuzz.sh
  # On CI, free the fuzz build's disk (about 3 GB) before the test builds.
  if ci; then rm -rf target/fuzz; fi
fi

step "features (cargo hack: no feature, each alone, every pair; warnings are errors)"
# The library and the binary as a dependent builds them: no tests, no dev-dependencies
# (the tests need all features, the clippy step above). Pairs where one feature turns
# on the other are skipped; `default` pairs with `conformance` only (all features).
# About 3 minutes after the clippy step on 2 cores, 1 minute when nothing changed.
cargo hack clippy --workspace --feature-powerset --depth 2 --no-dev-deps --keep-going \
  --exclude-features fuzzing \
  -- -D warnings

step "no tokio without features (the model, JSON and JSON-RPC layers)"
# Captured first: with pipefail, grep -q closing the pipe early would fail the pipeline.
tree=$(cargo tree -p asap-protocol --no-default-features -e normal --prefix none)
if grep -q tokio <<<"$tree"; then
  echo "error: asap-protocol without features depends on tokio:" >&2
  grep tokio <<<"$tree" >&2
  exit 1
fi

step "API docs (rustdoc, warnings are errors)"
RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -D warnings" cargo doc --workspace --all-features --no-deps

step "doc tests"
cargo test --workspace --all-features --doc

if [ "$want_release" = 1 ]; then
  step "packages (cargo publish --dry-run: each crate built alone from its .crate)"
  # On CI the checkout is clean; a developer's uncommitted work is packaged as it is.
  dirty=(); ci || dirty=(--allow-dirty)
  # cargo unpacks the packaged asap-protocol for asap-cli's verification into a local
  # overlay registry under CARGO_HOME (registry/src/-<hash>/), keyed by name and
  # version only, and reuses it on the next run: a later run would verify asap-cli
  # against a stale library of the same version. Remove those unpackings first (the
  # crates.io ones live in registry/src/index.*, untouched).
  cargo_home="${CARGO_HOME:-$HOME/.cargo}"
  rm -rf "$cargo_home"/registry/src/-*/asap-protocol-*
  cargo publish --dry-run --workspace --locked "${dirty[@]}"
  # The verification builds are not needed again.
  rm -rf target/package

  step "release workflow (actionlint)"
  scripts/lint-workflows.sh

  step "static release binary and its container"
  scripts/release-binary.sh target/dist
  scripts/container-test.sh target/dist/bin/asap
  # On CI, free the release build's disk before the test builds.
  if ci; then rm -rf target/x86_64-unknown-linux-gnu; fi
fi

if [ "$want_coverage" = 1 ]; then
  # One run of the suite serves both: instrumented under nextest, then the coverage
  # report, then nextest's summary line again (the last line).
  step "tests (nextest, with line coverage: cargo llvm-cov)"
  scripts/coverage.sh
else
  step "tests (nextest)"
  cargo nextest run --workspace --all-features --no-fail-fast
fi
