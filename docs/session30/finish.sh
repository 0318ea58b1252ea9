#!/bin/bash
# Session 30: stop each arm once its cosine has ended, then export, fit, quick-evaluate and compare.
cd /work/main
step() { tail -n 1 runs/$1/log.jsonl | python -c "import json,sys; print(json.loads(sys.stdin.read())['step'])"; }
stop_at() {  # run target
  while [ "$(step $1)" -lt $2 ] && pgrep -f "cwic train --out runs/$1 " > /dev/null; do sleep 20; done
  pkill -TERM -f "cwic train --out runs/$1 " ; sleep 30
  echo "$(date +%T) stopped $1 at $(step $1)"
}
finish() {  # run warm_start crops anchor
  python -m cwic export --run runs/$1 --which last --to runs/ship/$1 > runs/export_$1.log 2>&1
  python -m cwic train-entropy --checkpoint runs/ship/$1 --warm-start-from $2 --crops $3 --minutes 15 --threads 1 --no-golden > runs/entropy_fit_$1.log 2>&1
  python -m cwic evaluate --checkpoint runs/ship/$1 --images ../shared/data/kodak --out runs/eval/$1 --codecs cwic cwic-uniform jpeg2000 jpeg --no-sweep --jobs 1 > runs/eval_$1.out 2>&1
  PYTHONPATH=. python benchmarks/compare_results.py $4 runs/eval/$1/results.json --codecs cwic cwic-uniform --out runs/eval/$1_vs_shipped.json > runs/cmp_$1.log 2>&1
  echo "$(date +%T) finished $1"
}
(stop_at s30skew3 108062; finish s30skew3 checkpoints/cwic-slim 1500 docs/kodak/results.json) &
(stop_at s30ms 96866; finish s30ms runs/ship/s29ms 1000 docs/kodak-msssim/results.json) &
wait
