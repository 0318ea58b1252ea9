#!/bin/bash
# Session 30: the map coded over 1 / 2 / 3 lattices, each fitted 8 minutes from the shipped models on the same codes.
cd /work/main
for s in 2 1 3; do
  rm -rf runs/mapsc/s$s; cp -r checkpoints/cwic-slim runs/mapsc/s$s
  python -m cwic train-entropy --checkpoint runs/mapsc/s$s --warm-start --map-scales $s --crops 1500 --minutes 8 --threads 1 --no-golden --no-calibrate > runs/mapsc/fit_s$s.log 2>&1
  PYTHONPATH=. python benchmarks/map_stages.py --checkpoint runs/mapsc/s$s --images 24 --out runs/mapsc/stages_s$s.json > runs/mapsc/stages_s$s.out 2>&1
  echo "$(date +%T) done s$s"
done
