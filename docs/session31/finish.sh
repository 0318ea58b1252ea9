#!/bin/bash
# Session 31: when s32ms's minutes run out, export its last (end-of-cosine) state with the fp16 check.
cd /work/main
while pgrep -f "cwic train --out runs/s32ms " > /dev/null; do sleep 30; done
python -m cwic export --run runs/s32ms --which last --to checkpoints/candidates/cwic-slim-msssim-s32 > runs/export_s32ms.log 2>&1
echo "$(date +%T) exported s32ms"
# then its context fit (warm start from the shipped MS-SSIM models), the quick evaluation and the comparison
python -m cwic train-entropy --checkpoint checkpoints/candidates/cwic-slim-msssim-s32 --warm-start-from checkpoints/cwic-slim-msssim --map-scales 3 --crops 1500 --minutes 12 --threads 1 --no-golden > runs/entropy_fit_s32ms.log 2>&1
python -m cwic evaluate --checkpoint checkpoints/candidates/cwic-slim-msssim-s32 --images ../shared/data/kodak --out runs/eval/s32ms --codecs cwic cwic-uniform jpeg2000 jpeg --no-sweep --jobs 1 > runs/eval_s32ms.out 2>&1
PYTHONPATH=. python benchmarks/compare_results.py docs/kodak-msssim/results.json runs/eval/s32ms/results.json --codecs cwic cwic-uniform --out docs/session31/s32ms_vs_shipped.json > runs/cmp_s32ms.log 2>&1
echo "$(date +%T) finished s32ms"
