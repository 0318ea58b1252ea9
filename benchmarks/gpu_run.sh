#!/usr/bin/env bash
# The prepared GPU run (docs/training.md, "Training on GPUs"): train from a given start for a given
# number of minutes on every GPU of the machine (torchrun, one process per GPU), write a resumable
# state and an exported checkpoint into OUT, and print steps/s and the quick evaluation.
#
#   bash benchmarks/gpu_run.sh START [MINUTES] [OUT]
#
# START: a run folder with train_state.json (copied into OUT and resumed) or a checkpoint folder
# (--init-from). MINUTES defaults to 8. OUT defaults to $OUT/run when the device tool's $OUT is set,
# else runs/gpu. Environment: CWIC_PACK (the packed training set, default runs/carry/train.zip),
# CWIC_DEVICE (default cuda; cpu for the dry run in tests/test_distributed.py), CWIC_NPROC (default:
# the number of GPUs, at least 1), CWIC_TRAIN_ARGS (the recipe; default below).
set -euo pipefail
cd "$(dirname "$0")/.."

START=${1:?usage: gpu_run.sh START [MINUTES] [OUT]}
MINUTES=${2:-8}
DEST=${3:-${OUT:+$OUT/run}}
DEST=${DEST:-runs/gpu}
PACK=${CWIC_PACK:-runs/carry/train.zip}
DEVICE=${CWIC_DEVICE:-cuda}
RECIPE=${CWIC_TRAIN_ARGS:---batch 32 --lr 1e-4 --warmup 200 --ema 0.999 --rate-max 1.0 --rate-skew 2.0 --eval-every 2000 --save-minutes 2}
NPROC=${CWIC_NPROC:-$(python -c 'import torch; print(max(torch.cuda.device_count(), 1))')}

python -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.device_count(), "GPU(s)")'
mkdir -p "$DEST"
if [ -f "$START/train_state.json" ]; then
    cp "$START"/train_state.* "$DEST"/
    if [ -f "$START/ema.safetensors" ]; then cp "$START/ema.safetensors" "$DEST"/; fi
    FROM=(--resume)
else
    FROM=(--init-from "$START")
fi
# shellcheck disable=SC2206
ARGS=(--data "$PACK" --out "$DEST" --device "$DEVICE" --minutes "$MINUTES" "${FROM[@]}" $RECIPE)
if [ "$NPROC" -gt 1 ]; then
    python -m torch.distributed.run --standalone --nproc_per_node="$NPROC" -m cwic train "${ARGS[@]}" | tee "$DEST/stdout.log"
else
    python -m cwic train "${ARGS[@]}" | tee "$DEST/stdout.log"
fi
python -m cwic export --run "$DEST" --to "$DEST/checkpoint" --kodak "$PACK" --rates 0.1 0.3 0.6 > "$DEST/export.json"
python - "$DEST" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = [json.loads(x) for x in (out / "stdout.log").read_text().splitlines() if x.startswith("{")]
speed = sorted(r["steps_per_s"] for r in rows[1:])  # the first row includes the start-up
print("steps/s (median over this run's log rows):", speed[len(speed) // 2] if speed else None)
print("quick evaluation of the exported checkpoint:", (out / "export.json").read_text())
print("exported:", (out / "checkpoint").resolve())
PY
