#!/bin/bash
# Session 34: when the medium chain's minutes run out, export its last state with the fp16 check.
cd /work/main
while pgrep -f "cwic train --out runs/s37med " > /dev/null; do sleep 20; done
python -m cwic export --run runs/s37med --which last --to runs/ship/s37med > runs/export_s37med.log 2>&1
echo "$(date +%T) exported s37med"
