#!/usr/bin/env bash
# Reproduce the shipped tiny presets from scratch, seeded, on a CPU (docs/results.md):
#   0. NeedleQA training data (sevila synth needleqa, seed 1)
#   1. the tiny base model (the BLIP-2 stand-in): scripts/train_tiny_base.py, exported as tiny-base
#   2. SeViLA's stages in the paper's order, through the toolkit's commands and recipes:
#      Localizer pre-training on the spans -> pseudo-labels from the zero-shot Answerer -> Localizer refinement
#      from the pre-trained Localizer -> Answerer fine-tuning on the refined Localizer's keyframes
#   3. self-refinement alone (from the untrained Localizer), for the results page's Table 5
#   4. export tiny-trained
# Every stage runs under /usr/bin/time (wall seconds, peak RSS); the log goes to $OUT/train_tiny.log and the
# timings to $OUT/timings.tsv. Usage: bash scripts/train_tiny.sh [OUT] (default runs/tiny).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/tiny}
BIN=${BIN:-.venv/bin}
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1  # one thread per process: faster on a shared 2-core machine
mkdir -p "$OUT"
LOG=$OUT/train_tiny.log
TIMES=$OUT/timings.tsv
DATA=$OUT/data
ANN=$DATA/annotations
BASE=$OUT/tiny-base
printf 'stage\twall_s\tpeak_rss_kb\tload_before\tload_after\n' > "$TIMES"
{ echo "# $(date -u +%FT%TZ) $(uname -srm); $(nproc --all) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  echo "# $("$BIN/python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
  echo "# uptime: $(uptime)"; } | tee "$LOG"

stage() {  # stage NAME COMMAND...: run, log, time
  local name=$1; shift
  local before; before=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "## $name: $*" | tee -a "$LOG"
  /usr/bin/time -f "%e %M" -o "$OUT/.time" "$@" >> "$LOG" 2>&1
  read -r wall rss < "$OUT/.time"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$wall" "$rss" "$before" "$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$TIMES"
}

TRAIN=(-a "$ANN/train.csv" --videos "$DATA/videos" --val-annotations "$ANN/val.csv" --workers 1 -q)

stage data "$BIN/sevila" synth needleqa --out "$DATA" --videos 500 --seed 1 --overwrite -q
stage base "$BIN/python" scripts/train_tiny_base.py --out "$OUT/base" --seed 0
stage export-base "$BIN/python" scripts/train_tiny_export.py base "$OUT/base/base_state.pt" "$BASE"
stage pretrain "$BIN/sevila" pretrain-localizer -d qvhighlights --recipe pretrain-needleqa-spans \
  -a "$ANN/spans_train.jsonl" --videos "$DATA/videos" --val-annotations "$ANN/spans_val.jsonl" --workers 1 -q \
  --model "$BASE" --out "$OUT/pretrain"
stage pseudo-label "$BIN/sevila" pseudo-label -d needleqa --recipe refine-needleqa -a "$ANN/train.csv" \
  --videos "$DATA/videos" -q --model "$BASE" --out "$OUT/labels"
stage refine "$BIN/sevila" refine -d needleqa --recipe refine-needleqa "${TRAIN[@]}" \
  --labels "$OUT/labels/pseudo_labels.jsonl" --model "$BASE" --checkpoint "$OUT/pretrain/checkpoint_best.pth" \
  --set init=checkpoint --out "$OUT/refine"
stage finetune "$BIN/sevila" finetune -d needleqa --recipe finetune-needleqa "${TRAIN[@]}" \
  --model "$BASE" --checkpoint "$OUT/refine/checkpoint_best.pth" --out "$OUT/finetune"
stage export-trained "$BIN/python" scripts/train_tiny_export.py trained "$BASE" \
  "$OUT/finetune/checkpoint_best.pth" "$OUT/tiny-trained"
stage refine-alone "$BIN/sevila" refine -d needleqa --recipe refine-needleqa "${TRAIN[@]}" \
  --labels "$OUT/labels/pseudo_labels.jsonl" --model "$BASE" --set init=answerer-copy --out "$OUT/refine_alone"
echo "# uptime: $(uptime)" | tee -a "$LOG"
awk -F'\t' 'NR > 1 && $1 != "data" { s += $2 } END { printf "# base + SeViLA stages (all but data): %.0f s\n", s }' \
  "$TIMES" | tee -a "$LOG"
echo "copy $BASE and $OUT/tiny-trained to sevila_tools/presets/tiny_base and tiny_trained to ship them" | tee -a "$LOG"
