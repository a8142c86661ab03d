#!/usr/bin/env bash
# The results page (docs/results.md) in miniature: every number comes from one of the commands below, run on a
# NeedleQA test set that no training stage saw (seed 2, 250 videos, test split only).
#   Tables 1/2: the fine-tuned Answerer on 4 uniform frames vs the Localizer's 32 -> 4 keyframes
#   Tables 3/9: the selectors side by side at 32 -> 4 (oracle: the paper's 4 uniform frames)
#   Table 5:    the Localizer untrained / pre-trained / self-refined / both, with the zero-shot Answerer
#   QVHighlights: the Localizer's frame accuracy on the test spans (64 uniform frames, the official setting;
#   tiny-trained's Localizer is the refined one, unchanged by the Answerer's fine-tuning)
# Usage: bash scripts/results_tiny.sh [RUN] (default runs/tiny: the folder scripts/train_tiny.sh wrote).
# Writes RUN/results/<name>/ (summary.json per command) and RUN/results/results.json (collect_results.py).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/tiny}
BIN=${BIN:-.venv/bin}
export HF_HUB_OFFLINE=1
R=$RUN/results
EVAL=${EVAL:-$RUN/eval_data}
mkdir -p "$R"
LOG=$R/results.log
echo "# $(date -u +%FT%TZ) $(nproc --all) CPUs; uptime: $(uptime)" | tee "$LOG"
run() {  # run NAME COMMAND...: the command line goes to the log, its output to RUN/results/NAME.out
  local name=$1; shift
  echo "## $name: $*" | tee -a "$LOG"
  "$@" > "$R/$name.out" 2>&1 || { cat "$R/$name.out"; exit 1; }
}

[ -f "$EVAL/annotations/test.csv" ] || run eval-data "$BIN/sevila" synth needleqa --out "$EVAL" --videos 250 \
  --seed 2 --splits 0,0,1 --overwrite -q
QA=(-d needleqa -a "$EVAL/annotations/test.csv" --videos "$EVAL/videos" --device cpu --overwrite -q)
SPANS=(-d qvhighlights -a "$EVAL/annotations/spans_test.jsonl" --videos "$EVAL/videos" --device cpu --overwrite -q)
LOC=(pretrain "$RUN/pretrain/checkpoint_best.pth" refine_alone "$RUN/refine_alone/checkpoint_best.pth"
     refine "$RUN/refine/checkpoint_best.pth")

# Tables 1/2
run t1-uniform4 "$BIN/sevila" eval "${QA[@]}" --model "$RUN/tiny-trained" -s uniform -n 4 -k 4 --out "$R/t1-uniform4"
run t1-localizer "$BIN/sevila" eval "${QA[@]}" --model "$RUN/tiny-trained" -s localizer -n 32 -k 4 --out "$R/t1-localizer"
# Tables 3/9
run t3-ablate "$BIN/sevila" ablate "${QA[@]}" --model "$RUN/tiny-trained" -s uniform,random,localizer,oracle --grid 32:4 \
  --out "$R/t3-ablate"
# Table 5 and QVHighlights: the Localizer of each stage on tiny-base (zero-shot Answerer)
run t5-none "$BIN/sevila" eval "${QA[@]}" --model "$RUN/tiny-base" -s localizer -n 32 -k 4 --out "$R/t5-none"
run qvh-none "$BIN/sevila" eval "${SPANS[@]}" --model "$RUN/tiny-base" -n 64 --out "$R/qvh-none"
for ((i = 0; i < ${#LOC[@]}; i += 2)); do
  name=${LOC[i]} ckpt=${LOC[i + 1]}
  run "t5-$name" "$BIN/sevila" eval "${QA[@]}" --model "$RUN/tiny-base" --checkpoint "$ckpt" -s localizer -n 32 -k 4 \
    --out "$R/t5-$name"
  run "qvh-$name" "$BIN/sevila" eval "${SPANS[@]}" --model "$RUN/tiny-base" --checkpoint "$ckpt" -n 64 \
    --out "$R/qvh-$name"
done
"$BIN/python" scripts/collect_results.py "$R" "$EVAL/annotations/test.csv" | tee -a "$LOG"
