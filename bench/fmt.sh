#!/usr/bin/env bash
# Benchmark: `orchc fmt` on the generated 100,000-line program of bench/gen_check_program.py.
# Prints the wall time and peak memory of 5 runs of `fmt -` (stdin to stdout) and of one
# `fmt --check` on the formatted file (which must then report nothing).
# Usage: bash bench/fmt.sh [UNITS]   (410 units ≈ 100,000 lines)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 bench/gen_check_program.py "${1:-410}" > "$dir/big.orch"
echo "program: $(wc -l < "$dir/big.orch") lines, $(wc -c < "$dir/big.orch") bytes"
for i in 1 2 3 4 5; do
  /usr/bin/time -f "fmt -: %e s wall, %M KB max RSS" target/release/orchc fmt - < "$dir/big.orch" 2>&1 > "$dir/formatted.orch" | tail -1
done
echo "formatted: $(wc -l < "$dir/formatted.orch") lines"
/usr/bin/time -f "fmt --check (formatted): %e s wall, %M KB max RSS" target/release/orchc fmt --check "$dir/formatted.orch" 2>&1 | tail -1
