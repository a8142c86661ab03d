#!/usr/bin/env bash
# Real-size SeViLA speed/memory benchmark on one CUDA GPU (H100 / H200 / A100 / A6000 ...).
#
# Random weights of the real shapes (EVA ViT-g/14, two BLIP-2 Q-Formers, Flan-T5-XL): nothing is downloaded,
# so it runs on an offline machine. Needs a Python environment with a CUDA build of torch and this package
# installed (`pip install torch --index-url https://download.pytorch.org/whl/cu124 && pip install -e .`).
#
#   scripts/gpu_bench.sh [OUT_DIR]          # default OUT_DIR=bench-gpu
#   PYTHON=/path/to/python scripts/gpu_bench.sh
#
# Writes OUT_DIR/*.json (one report per run), OUT_DIR/nvidia-smi.txt and prints a summary against the targets:
#   32->4 forward chain <= 0.15 s/sample at batch 8, peak <= 9 GB at batch 1 (bf16 T5, fp16 ViT).
# About 10 minutes on an H100 (most of it the reference-style path, which generates 30 tokens per frame).
set -euo pipefail

OUT=${1:-bench-gpu}
PY=${PYTHON:-python}
mkdir -p "$OUT"
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

bench() { "$PY" -m sevila_tools.cli.app bench "$@"; }

# 1. the targets: 32 -> 4 at batch 1 and 8 (runtime precision policy: ViT fp16, T5 bf16), next to the
#    reference-style path (official code: one question at a time, generate(max_new_tokens=30)) and the paper
bench --size full --device cuda --settings 32:4 --batch-sizes 1,8 --reference --repeats 5 --warmup 2 \
    --out "$OUT/full_32x4.json"

# 2. the other frame settings and larger batches (throughput / memory trade-off)
bench --size full --device cuda --settings 16:4,64:8 --batch-sizes 1,8,16 --repeats 3 --warmup 1 \
    --out "$OUT/full_settings.json"

# 3. memory knobs at batch 8: smaller ViT / T5 chunks
bench --size full --device cuda --settings 32:4 --batch-sizes 8 --repeats 3 --vit-batch-size 8 --t5-batch-size 32 \
    --out "$OUT/full_small_chunks.json"

# 5. the tiny command of record, on this machine's GPU
bench --size tiny --reference --device cuda --out "$OUT/tiny_reference.json"

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
ref = r["reference"][0]
print(f"reference-style path: {ref['stages']['chain']['s_per_sample']:.3f} s/sample, "
      f"peak {ref['memory']['peak_gib']:.2f} GiB; speed-up x{r['speedup']} "
      f"(x{r['speedup_vs_trained_eos']} vs generate stopped at a trained model's </s>); "
      "paper 3.28 s/sample, 7.98 GB (A6000)")
for a in r["agreement"]:
    print(f"agreement (bf16): max |yes diff| {a['max_abs_diff_yes']:.3g}, keyframes equal {a['keyframes_equal']}, "
          f"answers equal {a['answers_equal']}")
print(f"\nreports in {out}/")
EOF
