#!/usr/bin/env bash
# Benchmark: a `for` over a list held in the state against a `for` over `range(n)`, both with a
# no-I/O step, at two sizes. Each iteration starts from the keys its body reads, so both forms
# should grow linearly, in time and in peak memory (max RSS), and stay close to each other.
# Usage: bash bench/for_list.sh [N1 N2]   (default 5000 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/list.orch" <<'ORCH'
step pad(x: Int) -> (y: Int) {
  { y: x + 1 }
}
workflow over_list(items: [Int]) -> (y: [Int]) {
  for x in items limit 16 { pad }
}
workflow over_range(n: Int) -> (y: [Int]) {
  for x in range(n) limit 16 { pad }
}
ORCH
for n in "${1:-5000}" "${2:-20000}"; do
  python3 -c "import json,sys; json.dump({'items': list(range($n))}, sys.stdout)" > "$dir/items.json"
  for form in "over_range -i n=$n" "over_list --inputs $dir/items.json"; do
    rm -f "$dir"/state.db*
    # shellcheck disable=SC2086
    /usr/bin/time -f "n=$n ${form%% *}: %e s wall, %M KB max RSS" \
      target/release/orchc run "$dir/list.orch" $form --db "$dir/state.db" 2>&1 >/dev/null | tail -1
  done
done
