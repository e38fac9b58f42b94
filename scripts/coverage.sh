#!/usr/bin/env bash
# The test suite under nextest, instrumented for line coverage (cargo-llvm-cov): runs
# every test once, prints the per-file table and the library total, fails when a test
# fails or the wire-model layers (src/model, src/json) fall below
# ASAP_MIN_MODEL_COVERAGE (95 %), and prints nextest's own summary line last.
#
# Uses Debian's llvm-19 tools when present (rustup components cannot be fetched here).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -x /usr/lib/llvm-19/bin/llvm-cov ]; then
  export LLVM_COV="${LLVM_COV:-/usr/lib/llvm-19/bin/llvm-cov}"
  export LLVM_PROFDATA="${LLVM_PROFDATA:-/usr/lib/llvm-19/bin/llvm-profdata}"
fi
min="${ASAP_MIN_MODEL_COVERAGE:-95}"
out="target/coverage"
mkdir -p "$out"

# The report is made whatever the tests' outcome; the outcome decides the exit status.
tests=0
cargo llvm-cov nextest --workspace --all-features --no-report --no-fail-fast 2>&1 \
  | tee "$out/nextest.log" || tests=$?
cargo llvm-cov report --package asap-protocol --summary-only --json --output-path "$out/summary.json"
cargo llvm-cov report --package asap-protocol --summary-only | tee "$out/summary.txt" | sed -n '1,200p'

python3 - "$out/summary.json" "$min" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))["data"][0]
minimum = float(sys.argv[2])
def lines(pred):
    covered = count = 0
    for f in data["files"]:
        if pred(f["filename"]):
            covered += f["summary"]["lines"]["covered"]; count += f["summary"]["lines"]["count"]
    return covered, count
lib = lines(lambda n: "/crates/asap-protocol/src/" in n)
model = lines(lambda n: "/crates/asap-protocol/src/model/" in n or "/crates/asap-protocol/src/json/" in n)
pct = lambda c: 100.0 * c[0] / c[1] if c[1] else 100.0
print(f"coverage: library lines {pct(lib):.2f}% ({lib[0]}/{lib[1]}); model+json lines {pct(model):.2f}% ({model[0]}/{model[1]})")
if pct(model) < minimum:
    sys.exit(f"coverage: model+json below the {minimum}% floor")
PY

# The instrumented build is as large as the plain one; on CI, free the disk before
# nextest's summary line last, as scripts/test.sh promises.
# (Colour codes, if any, are dropped before matching.)
sed 's/\x1b\[[0-9;]*m//g' "$out/nextest.log" | grep -E '^ *Summary \[' | tail -1 || true
exit "$tests"
