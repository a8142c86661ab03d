"""Write a tiny model folder (``sevila convert`` layout: fp16 safetensors, ``sevila_config.json``, tokenizer).

    python scripts/train_tiny_export.py base RUN/base/base_state.pt OUT_DIR
        the pre-trained base (the Localizer is a copy of the answerer Q-Former)
    python scripts/train_tiny_export.py trained BASE_DIR CHECKPOINT OUT_DIR
        the base folder with both Q-Former branches of a training checkpoint (the SeViLA stages)

Weights are stored as fp16 (half the size); the toolkit loads them as fp32.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from sevila_tools.loading import SEVILA_CONFIG, WEIGHTS_FILE, load_runtime, save_converted

SOURCES_BASE = "tiny base pre-training on NeedleQA renderer frames (scripts/train_tiny_base.py)"


def _half(folder: Path) -> None:
    """Rewrite the folder's weights in fp16 (integer buffers unchanged)."""
    path = folder / WEIGHTS_FILE
    sd = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(str(path)).items()}
    save_file(sd, str(path), metadata={"format": "sevila_tools", "dtype": "float16"})


def export_base(state: Path, out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from train_tiny_base import base_config

    from sevila_tools.modeling import SevilaModel
    from sevila_tools.synth.vocab import build_tokenizer

    tok = build_tokenizer()
    model = SevilaModel(base_config(len(tok)))
    model.load_state_dict(torch.load(state, weights_only=True))
    sources = {"vision_model": SOURCES_BASE, "language_model": SOURCES_BASE, "answerer": SOURCES_BASE,
               "localizer": "copy of the answerer (base pre-training)"}
    save_converted(model.eval(), tok, out, {"model": "tiny-base", "sources": sources})
    _half(out)


def export_trained(base: Path, checkpoint: Path, out: Path) -> None:
    rt = load_runtime(str(base), str(checkpoint), device="cpu")
    info = dict(rt.info, model="tiny-trained", checkpoint=None)
    save_converted(rt, rt.tokenizer, out, info)
    meta = json.loads((out / SEVILA_CONFIG).read_text())
    meta["converted_from"] = {"model": "tiny-base", "checkpoint": checkpoint.name}
    (out / SEVILA_CONFIG).write_text(json.dumps(meta, indent=2))
    _half(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=("base", "trained"))
    ap.add_argument("paths", nargs="+", type=Path)
    args = ap.parse_args()
    out = args.paths[-1]
    if out.exists():
        shutil.rmtree(out)
    if args.kind == "base":
        export_base(args.paths[0], out)
    else:
        export_trained(args.paths[0], args.paths[1], out)
    print(f"wrote {out} ({sum(p.stat().st_size for p in out.iterdir()) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
