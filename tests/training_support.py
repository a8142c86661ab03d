"""Shared data and helpers of the training tests: four red/blue scene videos, annotations, a label file, and a
tiny BLIP-2 folder in the Hugging Face layout (also read by the checkpoint tests).

Test modules import what they use by name and declare their own fixtures over it; this module is never registered
as a plugin, so nothing here can reach the tests of other modules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from typer.testing import CliRunner

from sevila_tools.cli.app import app
from sevila_tools.eval.datasets import load_annotations
from sevila_tools.loading import load_runtime
from sevila_tools.synthetic import make_scene_video

runner = CliRunner()
RED, BLUE = (220, 30, 30), (30, 30, 220)
QUESTION = "what colour is the square?"
OPTIONS = ["red.", "blue.", "green."]
YES_FRAMES = [7, 22, 37, 52]  # red, blue, red, blue (scenes of 15 frames)
YES_LABELS = ["yes", "no", "yes", "no"]
FAST = ["--lr", "3e-2", "--min-lr", "3e-2", "--warmup-steps", "0", "--quiet"]
TINY = ["--model", "tiny-random", "--device", "cpu"]


def tiny_blip2_folder(path: Path, seed: int) -> Any:
    """Save a seeded BLIP-2 of the tiny preset's shapes (a non-trivial post_layernorm, tied T5 embeddings) and the
    tiny tokenizer as a Hugging Face folder at ``path``; returns the model written."""
    from transformers import Blip2ForConditionalGeneration

    from sevila_tools.tiny import tiny_model, tiny_tokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        hf = Blip2ForConditionalGeneration(tiny_model().config)
        with torch.no_grad():
            hf.vision_model.post_layernorm.weight.normal_()
    hf.language_model.encoder.embed_tokens = hf.language_model.shared
    hf.language_model.decoder.embed_tokens = hf.language_model.shared
    hf.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return hf


def make_data(d: Path) -> Path:
    """Write into ``d`` 4 scene videos (red/blue/red/blue, 15 frames each, 30 fps), NExT-QA SeViLA-JSON annotations, a labels
    JSONL (red frames yes) and a QVHighlights file whose windows cover the red scenes."""
    (d / "videos").mkdir()
    recs, labels, qvh = [], [], []
    for i in range(4):
        make_scene_video(d / "videos" / f"v{i}.mp4", [(15, RED), (15, BLUE), (15, RED), (15, BLUE)], fps=30)
        qid = f"CW_v{i}_{i}"
        recs.append({"video": f"v{i}", "qid": qid, "question": QUESTION, "a0": "red.", "a1": "blue.",
                     "a2": "green.", "answer": 0})
        labels.append({"qid": qid, "frame_indices": YES_FRAMES, "labels": YES_LABELS})
        qvh.append({"qid": 100 + i, "query": "a red square", "duration": 2, "vid": f"v{i}",
                    "relevant_windows": [[0, 0.5], [1.0, 1.5]]})
    (d / "ann.json").write_text(json.dumps(recs))
    (d / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in labels))
    (d / "qvh.jsonl").write_text("\n".join(json.dumps(r) for r in qvh))
    return d


def samples_of(data: Path) -> list:
    return load_annotations("nextqa", data / "ann.json", videos_root=data / "videos")


def fresh_runtime():
    return load_runtime("tiny-random", device="cpu")


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def part(sd: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    from sevila_tools.modeling import branch_of_key

    return {k: v for k, v in sd.items() if branch_of_key(k) == name}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return len(a) > 0 and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def cli(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def step_rows(out: Path) -> list[dict]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "step"]
