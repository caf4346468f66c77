#!/usr/bin/env bash
# Benchmark: `orchc show` and `orchc show --json` of a run with many step executions.
# Stores one run of a `for` over N no-I/O steps (default 50,000), then prints the wall time and
# peak memory (max RSS) of each form and the size of what it wrote. Steps are written as they are
# read, so the peak should barely grow with N (compare `bash bench/show.sh 5000`).
# Usage: bash bench/show.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/many.orch" <<'ORCH'
step pad(i: Int) -> (text: Str) {
  { text: "item ${i} with some padding text to make the outputs a realistic size for a step" }
}
workflow many(n: Int) -> (text: [Str]) {
  for i in range(n) limit 16 { pad }
}
ORCH
orchc=target/release/orchc
$orchc run "$dir/many.orch" -i "n=${1:-50000}" --db "$dir/state.db" --json > "$dir/run.json" 2>/dev/null
run=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["run_id"])' "$dir/run.json")
echo "run $run: ${1:-50000} steps, store $(du -h "$dir/state.db" | cut -f1)"
for form in "" "--json"; do
  /usr/bin/time -f "show $form: %e s wall, %M KB max RSS" $orchc show "$run" $form --db "$dir/state.db" 2>&1 > "$dir/out" | tail -1
  echo "  wrote $(wc -c < "$dir/out") bytes"
done
