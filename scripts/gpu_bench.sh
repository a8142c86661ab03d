#!/usr/bin/env bash
# Real-size SeViLA speed/memory benchmark on one CUDA GPU (H100 / H200 / A100 / A6000 ...).
#
# Random weights of the real shapes (EVA ViT-g/14, two BLIP-2 Q-Formers, Flan-T5-XL): nothing is downloaded,
# so it runs on an offline machine. Needs a Python environment with a CUDA build of torch and this package
# installed (`pip install torch --index-url https://download.pytorch.org/whl/cu124 && pip install -e .`).
#
#   scripts/gpu_bench.sh [OUT_DIR]          # default OUT_DIR=bench-gpu
#   PYTHON=/path/to/python QUICK=1 scripts/gpu_bench.sh   # QUICK=1: steps 1 and 4 only, fewer repeats
#
# Writes OUT_DIR/*.json (one report per run), OUT_DIR/nvidia-smi.txt and prints a summary against the targets:
#   32->4 forward chain <= 0.15 s/sample at batch 8, peak <= 9 GB at batch 1 (bf16 T5, fp16 ViT);
#   end to end: one question on one new video (default decoding), and NExT-QA-like throughput with decoding in
#   $(nproc) processes.
# About 15 minutes on an H100 (scenario videos are generated once into OUT_DIR/videos, a few minutes on a CPU).
set -euo pipefail

OUT=${1:-bench-gpu}
PY=${PYTHON:-python}
QUICK=${QUICK:-0}
WORKERS=${DECODE_WORKERS:-$(nproc)}
mkdir -p "$OUT/videos"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

"$PY" - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("gpu_bench.sh: torch.cuda.is_available() is False (CPU build of torch, or no GPU visible)")
p = torch.cuda.get_device_properties(0)
print(f"GPU: {p.name}, {p.total_memory / 2**30:.1f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
lscpu > "$OUT/lscpu.txt" 2>&1 || true

bench() { "$PY" -m sevila_tools.cli.app bench "$@"; }
REPEATS=5
[ "$QUICK" = 1 ] && REPEATS=2

# 1. the targets: 32 -> 4 at batch 1 (memory) and 8 (speed), runtime precision policy (ViT fp16, T5 bf16), next
#    to the reference-style path (official code: one question at a time through generate) and the paper
bench --size full --device cuda --settings 32:4 --batch-sizes 1,8 --reference --repeats "$REPEATS" --warmup 2 \
    --decode-workers "$WORKERS" --out "$OUT/full_32x4.json"

if [ "$QUICK" != 1 ]; then
  # 2. the other frame settings and larger batches (throughput / memory trade-off)
  bench --size full --device cuda --settings 16:4,64:8 --batch-sizes 1,8,16 --repeats 3 --warmup 1 \
      --decode-workers "$WORKERS" --out "$OUT/full_settings.json"
  # 3. memory knobs at batch 8: smaller ViT / T5 chunks
  bench --size full --device cuda --settings 32:4 --batch-sizes 8 --repeats 3 --vit-batch-size 8 \
      --t5-batch-size 32 --out "$OUT/full_small_chunks.json"
fi

# 4. end to end, where users feel it: one question on one new video (NExT-QA-, QVHighlights-, agent-shaped and
#    10-minute videos) with the default decoding, as `sevila localize`, the agents and the web page decode:
#    decoder auto (PyAV from the keyframes where its frames are decord's, skipping non-reference frames), one
#    video split over the usable cores; and a NExT-QA-like dataset run (9 questions per video, a DecodePool of
#    $WORKERS processes overlapped with the model)
bench --size full --device cuda --scenario single --settings 32:4 --repeats "$REPEATS" --warmup 1 \
    --video-dir "$OUT/videos" --out "$OUT/full_single.json"
bench --size full --device cuda --scenario dataset --settings 32:4 --repeats "$REPEATS" --warmup 1 \
    --decode-workers "$WORKERS" --prefetch "$((2 * WORKERS))" --dataset-videos 8 --video-dir "$OUT/videos" \
    --out "$OUT/full_dataset.json"

if [ "$QUICK" != 1 ]; then
  # 5. the dataset run decoded as `sevila eval` does by default (a background thread, each video split over the
  #    usable cores), the official reader for comparison, and the tiny command of record
  bench --size full --device cuda --scenario dataset --settings 32:4 --repeats 3 \
      --dataset-videos 8 --video-dir "$OUT/videos" --out "$OUT/full_dataset_default.json"
  bench --size full --device cuda --scenario single,dataset --settings 32:4 --repeats 3 --decoder decord \
      --dataset-videos 8 --video-dir "$OUT/videos" --out "$OUT/full_scenarios_decord.json"
  bench --size tiny --reference --device cuda --out "$OUT/tiny_reference.json"
fi

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
r = json.loads((out / "full_32x4.json").read_text())
rows = {x["batch_size"]: x for x in r["results"]}
chain8 = rows[8]["stages"]["chain"]["s_per_sample"]
e2e8 = rows[8]["stages"]["end_to_end"]["s_per_sample"]
mem1 = rows[1]["memory"]
print(f"\nGPU {r['machine']['cuda']['name']}, precision {r['model']['precision']}")
print(f"32->4 forward chain, batch 8: {chain8:.3f} s/sample (target <= 0.15)  "
      f"{'OK' if chain8 <= 0.15 else 'MISSED'}; end to end incl. decode {e2e8:.3f} s/sample")
print(f"peak memory, batch 1: {mem1['peak_gb']:.2f} GB = {mem1['peak_gib']:.2f} GiB (target <= 9 GB)  "
      f"{'OK' if mem1['peak_gb'] <= 9 else 'MISSED'}")
ref = {x["path"]: x for x in r["reference"]}
print(f"speed-up x{r['speedup_vs_trained_eos']} against the reference stopped at a trained model's </s> "
      f"(x{r['speedup_vs_30_steps']} against all 30 generate steps); reference "
      f"{ref['reference_trained_eos']['stages']['chain']['s_per_sample']:.3f} s/sample; paper 3.28 s/sample, "
      "7.98 GB (A6000)")
for a in r["agreement"]:
    print(f"agreement (bf16): max |yes diff| {a['max_abs_diff_yes']:.3g}, keyframes equal {a['keyframes_equal']}, "
          f"answers equal {a['answers_equal']}")
sc = json.loads((out / "full_single.json").read_text())["scenarios"]
print(f"\nend to end, decoder {sc['config']['decoder']}, decode workers {sc['config']['decode_workers']}:")
for row in sc["single"]:
    st = row["stages"]
    print(f"  one question, {row['video']:>12} ({row['seconds']:g} s {row['resolution']}): total "
          f"{st['total']['s']:.3f} s = decode {st['decode']['s']:.3f} + ViT {st['vit']['s']:.3f} + chain "
          f"{st['chain']['s']:.3f}; decode / one decord reader {row['decode_vs_one_reader']:.2f}"
          + (f" (target <= {row['decode_target']}: {'OK' if row['decode_target_met'] else 'MISSED'})"
             if row["decode_target"] else ""))
d = json.loads((out / "full_dataset.json").read_text())["scenarios"]["dataset"]
print(f"  dataset ({d['videos']} videos x {d['questions'] // d['videos']} questions): {d['questions_per_s']:.2f} "
      f"questions/s; wall / max(decode alone, model alone) {d['wall_vs_max_alone']:.2f} (target <= 1.15: "
      f"{'OK' if d['overlap_target_met'] else 'MISSED'}); decode share {d['decode_share']:.0%}")
print(f"\nreports in {out}/")
EOF
