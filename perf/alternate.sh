#!/bin/bash
# Alternate two checkouts of agentloop (before / after a change) through the kernel and engine
# benchmarks, round by round, so both see the same machine: perf/alternate.sh OLD NEW [ROUNDS]
# writes OUT/{k,e}-{old,new}-<round>.json (OUT: $ALTERNATE_OUT, default /tmp/alternate);
# python perf/alternate_table.py OUT prints the medians side by side.
set -u
OLD=$(realpath "$1"); NEW=$(realpath "$2"); ROUNDS=${3:-4}
OUT=${ALTERNATE_OUT:-/tmp/alternate}; PY=${PYTHON:-python3}
mkdir -p "$OUT"
for i in $(seq 1 "$ROUNDS"); do
  for side in old new; do
    tree=$OLD; [ "$side" = new ] && tree=$NEW
    echo "round $i $side: $tree"
    (cd "$tree" && PYTHONPATH="$tree" timeout 900 "$PY" -m perf.kernels --quick --no-pymdp \
        --json "$OUT/k-$side-$i.json" > "$OUT/k-$side-$i.txt" 2>&1) || echo "kernels failed"
    (cd "$tree" && PYTHONPATH="$tree" timeout 1200 "$PY" -m perf.engine --quick \
        --json "$OUT/e-$side-$i.json" > "$OUT/e-$side-$i.txt" 2>&1) || echo "engine failed"
  done
done
