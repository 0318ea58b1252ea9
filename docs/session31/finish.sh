#!/bin/bash
# Session 31: when s32ms's minutes run out, export its last (end-of-cosine) state with the fp16 check.
cd /work/main
while pgrep -f "cwic train --out runs/s32ms " > /dev/null; do sleep 30; done
python -m cwic export --run runs/s32ms --which last --to checkpoints/candidates/cwic-slim-msssim-s32 > runs/export_s32ms.log 2>&1
echo "$(date +%T) exported s32ms"
