#!/usr/bin/env bash
# Session 33 (issue 14): ship checkpoints/candidates/cwic-slim-map3 (the default's context models
# refitted with the map on three lattices, session 32) once its full Kodak evaluation has finished.
# Run from the repository root; waits for the evaluation started with
#   python -m cwic evaluate --checkpoint checkpoints/candidates/cwic-slim-map3 --images ../shared/data/kodak \
#       --out docs/kodak --reference --jobs 1 --codecs cwic cwic-uniform cwic-refined cwic-uniform-refined \
#       jpeg jpeg2000 webp avif
set -euo pipefail
while pgrep -f "cwic evaluate --checkpoint checkpoints/candidates/cwic-slim-map3" > /dev/null; do sleep 30; done
test "$(python -c 'import json; print(len(json.load(open("docs/kodak/results.json"))["images"]))')" = 24
# The candidate becomes the shipped folder; the results name that folder (same weights and context
# models: resume and results match the checkpoint id, not the path).
rm -r checkpoints/cwic-slim
mv checkpoints/candidates/cwic-slim-map3 checkpoints/cwic-slim
python - <<'P'
import json
from pathlib import Path
p = Path("docs/kodak/results.json")
d = json.loads(p.read_text())
d["checkpoint"]["path"] = "checkpoints/cwic-slim"
p.write_text(json.dumps(d, indent=1, allow_nan=False) + "\n")  # as cwic evaluate writes it
P
PYTHONPATH=. python benchmarks/compare_results.py 4bcd325:docs/kodak/results.json docs/kodak/results.json \
    --codecs cwic cwic-uniform cwic-refined cwic-uniform-refined --out docs/session33/map3_vs_shipped.json
python -m cwic train-entropy --checkpoint checkpoints/cwic-slim --skip-train --no-calibrate | tee docs/session33/golden.log
nice -n 10 python benchmarks/kodak_bitstream.py | tee docs/session33/kodak_bitstream.log
echo "$(date +%T) shipped map3"
