#!/usr/bin/env bash
# Benchmark: `orchc check` on a generated 100,000-line program (bench/gen_check_program.py).
# Prints the wall time of each of 5 runs and the peak memory (max RSS) of the slowest.
# Usage: bash bench/check.sh [UNITS]   (410 units ≈ 100,000 lines)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 bench/gen_check_program.py "${1:-410}" > "$dir/big.orch"
echo "program: $(wc -l < "$dir/big.orch") lines, $(grep -c '^step ' "$dir/big.orch") steps, $(grep -c '^product ' "$dir/big.orch") products"
target/release/orchc check "$dir/big.orch" > "$dir/out.txt" 2>&1 || { echo "the generated program does not check:"; head -40 "$dir/out.txt"; exit 1; }
for i in 1 2 3 4 5; do
  /usr/bin/time -f "%e s wall, %M KB max RSS" target/release/orchc check "$dir/big.orch" 2>&1 >/dev/null | tail -1
done
