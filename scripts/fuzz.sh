#!/usr/bin/env bash
# Fuzzes every cargo-fuzz target in fuzz/ for a fixed time, as CI does: installs
# cargo-fuzz if missing, builds the targets with the nightly toolchain (AddressSanitizer,
# leak detection on), seeds each corpus from the project's own test data (fuzz/seeds.py),
# runs each target, and fails if any target crashed, leaked, timed out or ran out of
# memory. Prints the executions each target ran.
#
#   scripts/fuzz.sh                          # every target, ASAP_FUZZ_SECONDS each
#   scripts/fuzz.sh jwt envelope             # some targets
#   ASAP_FUZZ_SECONDS=60 scripts/fuzz.sh     # longer (default 10 s per target)
#   ASAP_FUZZ_JOBS=1 scripts/fuzz.sh         # targets at once (default: the CPU count)
#   ASAP_CARGO=my-cargo-wrapper scripts/fuzz.sh
#
# Everything it writes is under target/fuzz: the build, seeds/, corpus/<target>/ (kept
# between local runs, so the fuzzers resume) and artifacts/<target>/ (crashing inputs;
# reproduce one with `target/fuzz/<triple>/release/<target> <file>`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_FUZZ_VERSION=0.13.1
seconds="${ASAP_FUZZ_SECONDS:-10}"
jobs="${ASAP_FUZZ_JOBS:-$(nproc)}"
read -r -a cargo <<<"${ASAP_CARGO:-cargo}"
work=target/fuzz

say() { printf 'fuzz: %s\n' "$*" >&2; }

if ! "${cargo[@]}" +nightly --version >/dev/null 2>&1; then
  say "error: the nightly toolchain is missing (rustup toolchain install nightly)"
  exit 1
fi
if ! "${cargo[@]}" fuzz --version 2>/dev/null | grep -qF " $CARGO_FUZZ_VERSION"; then
  say "cargo install cargo-fuzz $CARGO_FUZZ_VERSION"
  "${cargo[@]}" install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet
fi

say "building the targets (nightly, AddressSanitizer)"
started=$SECONDS
"${cargo[@]}" +nightly fuzz build --fuzz-dir fuzz --target-dir "$work"
say "built in $((SECONDS - started)) s"
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin="$work/$triple/release"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  # One file per target, as cargo-fuzz lays them out.
  mapfile -t targets < <(basename -s .rs fuzz/fuzz_targets/*.rs)
fi

rm -rf "$work/seeds" "$work/logs" "$work/artifacts"
python3 fuzz/seeds.py "$work/seeds" >/dev/null
mkdir -p "$work/logs"

# One target: its corpus, then the seeds (read only); its log and exit code go to logs/.
run_one() {
  local target="$1"
  mkdir -p "$work/corpus/$target" "$work/seeds/$target" "$work/artifacts/$target"
  "$bin/$target" "$work/corpus/$target" "$work/seeds/$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -detect_leaks=1 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/$target/" >"$work/logs/$target.log" 2>&1
  echo $? >"$work/logs/$target.rc"
}
export -f run_one
export work bin seconds

say "running ${#targets[@]} targets for ${seconds} s each, ${jobs} at a time"
started=$SECONDS
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'
say "ran in $((SECONDS - started)) s"

failed=()
for target in "${targets[@]}"; do
  log="$work/logs/$target.log"
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
  if [ "$(cat "$work/logs/$target.rc")" != 0 ] || [ -z "$runs" ] \
    || [ -n "$(ls -A "$work/artifacts/$target")" ]; then
    failed+=("$target")
    printf '%-18s FAILED (log: %s)\n' "$target" "$log"
    grep -E -A30 'ERROR|panicked at|deadly signal|timeout|out-of-memory' "$log" | head -60 >&2 || true
  else
    printf '%-18s %10s executions\n' "$target" "$runs"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  say "error: ${#failed[@]} target(s) failed: ${failed[*]} (inputs in $work/artifacts)"
  exit 1
fi
say "all ${#targets[@]} targets ran clean"
