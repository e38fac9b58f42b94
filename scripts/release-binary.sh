#!/usr/bin/env bash
# Builds the release `asap` for this machine's Linux target as a static binary (glibc, +crt-static:
# no dynamic loader, no shared libraries), installed with `cargo install --path` into
# DIR/bin, and checks that it is static, stripped, and runs.
#
#   scripts/release-binary.sh DIR        # DIR/bin/asap
#
# --target makes RUSTFLAGS apply to the binary only (build scripts and proc macros stay
# dynamic); the target directory is the workspace's, so a rebuild is incremental.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="${1:?usage: scripts/release-binary.sh DIR}"
target="$(rustc -vV | sed -n 's/^host: //p')"   # x86_64 or aarch64 Linux

RUSTFLAGS="-C target-feature=+crt-static" \
  cargo install --path crates/asap-cli --locked --force --quiet \
  --target "$target" --target-dir target --root "$root"
bin="$root/bin/asap"
if readelf -l "$bin" | grep -q 'program interpreter'; then
  echo "release-binary: $bin is dynamically linked" >&2; exit 1
fi
if readelf -d "$bin" 2>/dev/null | grep -q NEEDED; then
  echo "release-binary: $bin needs shared libraries" >&2; exit 1
fi
if readelf -S "$bin" | grep -q '\.symtab'; then
  echo "release-binary: $bin is not stripped" >&2; exit 1
fi
"$bin" --version
printf 'release-binary: %s, %s bytes, static\n' "$bin" "$(stat -c %s "$bin")"
