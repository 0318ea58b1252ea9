#!/usr/bin/env bash
# Session 32's end (issue 14): the medium run's export and fp16 check, and the state the next
# session resumes from. Run from the repository root after the two jobs of docs/training.md
# "Session 32" (the context refit, the medium run) and with the Kodak evaluation stopped.
set -euo pipefail
python -m cwic export --run runs/s34med --which last --to checkpoints/candidates/cwic-medium-s34 \
    | tee docs/session32/export_s34med.log
cp runs/s34med/log.jsonl docs/session32/log_s34med.jsonl
cp runs/s34long/log.jsonl docs/session32/log_s34long.jsonl
# The evaluation of checkpoints/candidates/cwic-slim-map3 was started before cwic evaluate recorded
# the levels' rates in partial.jsonl (commit 1ad4ce9); its header got them from the candidate's card
# (the same rates: the calibration kept 0.04 ... 0.95), checked against run_settings() first.
