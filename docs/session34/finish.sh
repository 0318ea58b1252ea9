#!/bin/bash
# Session 34: when the map-TV arm's minutes run out, export it, fit its context models (warm start from
# the shipped ones), calibrate its levels, evaluate cwic + its ablation + JPEG 2000 on Kodak and compare.
# The medium chain's export runs on the other core when its minutes run out.
cd /work/main
while pgrep -f "cwic train --out runs/s37tv15 " > /dev/null; do sleep 20; done
python -m cwic export --run runs/s37tv15 --which last --to runs/ship/s37tv15 > runs/export_s37tv15.log 2>&1
echo "$(date +%T) exported s37tv15"
python -m cwic train-entropy --checkpoint runs/ship/s37tv15 --warm-start-from checkpoints/cwic-slim --crops 1500 --minutes 10 --threads 1 --no-golden > runs/entropy_fit_s37tv15.log 2>&1
echo "$(date +%T) context models of s37tv15 fitted"
while pgrep -f "cwic (train --out runs/s37med|export --run runs/s37med)" > /dev/null; do sleep 20; done
python -m cwic evaluate --checkpoint runs/ship/s37tv15 --images ../shared/data/kodak --out runs/eval/s37tv15 --codecs cwic cwic-uniform jpeg2000 --no-sweep --jobs 2 > runs/eval_s37tv15.out 2>&1
PYTHONPATH=. python benchmarks/compare_results.py docs/kodak/results.json runs/eval/s37tv15/results.json --codecs cwic cwic-uniform --out docs/session34/tv15_vs_shipped.json > runs/cmp_s37tv15.log 2>&1
echo "$(date +%T) finished s37tv15"
