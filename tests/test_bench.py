"""``sevila bench``: the fast path equals the official-style reference path; the report; real-size shapes.

The reference path (:mod:`sevila_tools.reference`) rebuilds the T5 inputs from the model's submodules and reads
scores through ``generate(max_new_tokens=30)`` one question at a time, so agreement with the batched one-step
fast path checks input assembly, padding across questions, keyframe selection and the decoding shortcut.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sevila_tools import bench
from sevila_tools.errors import InputError
from sevila_tools.reference import reference_forward
from sevila_tools.runtime import Precision

ATOL = 1e-5  # fp32 agreement required between the two paths


@pytest.fixture(scope="module")
def bench_inputs(tmp_path_factory):
    """Two questions on two synthetic videos, 8 candidate frames each, decoded with the real reader."""
    folder = tmp_path_factory.mktemp("bench")
    videos = bench.make_videos(folder, 2, num_frames=40)
    questions = bench.make_questions(videos, 2)
    frames = bench.decode_batch(questions, 8)
    return questions, np.stack([f.frames for f in frames])


def test_reference_path_equals_fast_path(tiny_runtime, bench_inputs):
    questions, frames = bench_inputs
    loc, qa = [q.loc_text for q in questions], [q.qa_text for q in questions]
    assert loc[0] != loc[1] and len(tiny_runtime.tokenizer(loc[0]).input_ids) != len(
        tiny_runtime.tokenizer(loc[1]).input_ids
    )  # different lengths: the fast path pads across questions, the reference path never does
    ref = bench.reference_batch(tiny_runtime, list(frames), questions, num_keyframes=2, num_options=5)
    # questions_per_call=2 is the GPU layout (texts padded across questions), 1 the CPU default
    for qpc in (2, 1):
        fast = bench.fast_forward(tiny_runtime, frames, loc, qa, 2, 5, questions_per_call=qpc)
        _check_agreement(fast, ref)


def _check_agreement(fast, ref):
    """Same scores (fp32, 1e-5), keyframes, answers and step-0 tokens."""
    assert fast.yes.shape == ref.yes.shape == (2, 8)
    assert float(fast.yes.std(dim=1).min()) > 1e-3  # scores really vary, so top-k is a real choice
    torch.testing.assert_close(fast.yes, ref.yes, atol=ATOL, rtol=0)
    torch.testing.assert_close(fast.no, ref.no, atol=ATOL, rtol=0)
    assert fast.letter_logits.shape == ref.letter_logits.shape == (2, 5)
    torch.testing.assert_close(fast.letter_logits, ref.letter_logits, atol=ATOL, rtol=0)
    assert fast.positions == ref.positions
    assert all(p == sorted(p) and len(set(p)) == 2 for p in fast.positions)
    assert fast.predictions == ref.predictions
    assert fast.step0_tokens == ref.step0_tokens
    # the reference really went through generate() (one or more steps per call)
    assert all(s["localizer"] >= 1 and s["answerer"] >= 1 for s in ref.generate_steps)

    agreement = bench.compare_outputs(fast, ref)
    assert agreement["keyframes_equal"] and agreement["answers_equal"]
    assert agreement["max_abs_diff_yes"] <= ATOL


def test_reference_keyframes_are_topk_of_its_own_scores(tiny_runtime, bench_inputs):
    questions, frames = bench_inputs
    q = questions[0]
    out = reference_forward(tiny_runtime, frames[0], q.loc_text, q.qa_text, num_keyframes=3, num_options=5)
    order = sorted(range(8), key=lambda i: (-float(out.yes[i]), i))[:3]
    assert out.positions == sorted(order)
    assert out.prediction == int(out.letter_logits.argmax())


def test_answerer_only_and_single_question_batches(tiny_runtime, bench_inputs):
    questions, frames = bench_inputs
    q = questions[1]
    one = bench.fast_forward(tiny_runtime, frames[1:], [q.loc_text], [q.qa_text], 2, 5)
    two = bench.fast_forward(
        tiny_runtime, frames, [x.loc_text for x in questions], [x.qa_text for x in questions], 2, 5
    )
    torch.testing.assert_close(one.yes[0], two.yes[1], atol=ATOL, rtol=0)
    assert one.positions[0] == two.positions[1]
    # Answerer alone on frames 2 and 6 of 8 (uniform segment midpoints) equals runtime.answer on those frames
    preds = bench.answerer_only_forward(tiny_runtime, frames[1:], [q.qa_text], 2, 5)
    raw = tiny_runtime.vit(frames[1, [2, 6]])
    assert preds == tiny_runtime.answer(raw[None], [q.qa_text], 5).predictions


def _invoke(args):
    from sevila_tools.cli.app import app

    return CliRunner().invoke(app, args)


def test_bench_cli_json_report(tmp_path):
    out_file = tmp_path / "bench.json"
    res = _invoke(
        [
            "bench",
            "--size",
            "tiny",
            "--reference",
            "--json",
            "--settings",
            "8:2",
            "--batch-sizes",
            "1,2",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--video-frames",
            "30",
            "--out",
            str(out_file),
        ]
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert json.loads(out_file.read_text()) == report

    assert isinstance(report["speedup"], float) and report["speedup"] > 0
    assert {(r["setting"], r["batch_size"]) for r in report["results"]} == {("8:2", 1), ("8:2", 2)}
    for row in report["results"]:
        assert set(row["stages"]) == set(bench.STAGES)
        for stage in row["stages"].values():
            assert stage["s"] > 0 and stage["s_per_sample"] == pytest.approx(
                stage["s"] / row["batch_size"], abs=2e-6
            )
        assert row["memory"]["kind"].startswith("process_rss") and row["memory"]["peak_bytes"] > 50e6
    refs = {r["path"]: r for r in report["reference"]}
    assert set(refs) == set(bench.REFERENCE_PATHS)
    ref, eos = refs["reference"], refs["reference_trained_eos"]
    assert ref["questions"] == 2 and set(ref["stages"]) == set(bench.REFERENCE_STAGES)
    assert ref["generate_steps"]["localizer"] >= 1
    assert eos["generate_steps"]["localizer"] <= 2 and eos["generate_steps"]["answerer"] <= 3
    (agree,) = report["agreement"]
    assert agree["keyframes_equal"] and agree["answers_equal"] and agree["max_abs_diff_yes"] <= ATOL
    # speedup = reference chain s/sample over fast chain s/sample at the largest batch (no batch 8 here)
    fast2 = next(r for r in report["results"] if r["batch_size"] == 2)["stages"]["chain"]["s_per_sample"]
    assert report["speedup"] == pytest.approx(ref["stages"]["chain"]["s_per_sample"] / fast2, rel=0.02)
    eos_chain = eos["stages"]["chain"]["s_per_sample"]
    assert report["speedup_vs_trained_eos"] == pytest.approx(eos_chain / fast2, rel=0.02)
    assert agree["trained_eos_answers_equal"]  # scores[1] is read before any early stop

    machine = report["machine"]
    assert machine["torch"] == torch.__version__ and machine["cpu_model"] and machine["logical_cores"] >= 1
    assert report["model"]["parameters"]["total"] == sum(p.numel() for p in _tiny_params())
    assert report["model"]["random_weights"] is True
    assert report["paper"]["sevila_s_per_sample"] == 3.28


def _tiny_params():
    from sevila_tools.tiny import tiny_model

    return tiny_model().parameters()


def test_bench_cli_rejects_bad_settings():
    res = _invoke(["bench", "--settings", "4:8", "--json"])
    assert res.exit_code != 0
    assert "keyframes <= frames" in res.output
    res = _invoke(["bench", "--batch-sizes", "one", "--json"])
    assert res.exit_code != 0 and "batch sizes" in res.output


def test_parsers():
    assert bench.parse_settings("32:4, 16:4,32:4") == [bench.Setting(32, 4), bench.Setting(16, 4)]
    assert bench.parse_batch_sizes("8,1,8") == [1, 8]
    for bad in ("32", "4:0", "a:b", ""):
        with pytest.raises(InputError):
            bench.parse_settings(bad)
    with pytest.raises(InputError):
        bench.parse_batch_sizes("0")


def test_full_size_parameter_counts_on_meta():
    model = bench.build_meta_model()
    counts = bench.part_parameter_counts(model)
    assert counts["vision_model"] == 985_952_256  # EVA ViT-g/14 ~ 985.9 M
    assert counts["answerer"] == 106_739_968  # sevila.md §11.2, exactly
    assert counts["localizer"] == 106_739_968
    assert counts["language_model"] == 2_849_757_184  # Flan-T5-XL ~ 2.85 B (lm_head untied, embedding shared)
    cfg = model.config
    assert cfg.text_config.dense_act_fn == "gelu" and cfg.text_config.is_gated_act
    assert (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2 + 1 == 257
    assert model.language_model.encoder.embed_tokens is model.language_model.shared
    # weight memory: all fp32 = 4 bytes per parameter; GPU policy (ViT fp16 matrices, T5 bf16) ~ 7.94 GiB
    assert bench.weight_bytes(model, Precision()) == 4 * counts["total"]
    gpu = bench.weight_bytes(model, Precision(vit=torch.float16, t5=torch.bfloat16))
    assert 7.9 < gpu / 2**30 < 8.0
    flops = bench.estimate_flops(cfg, bench.Setting(32, 4), loc_len=70, qa_len=77)
    assert 15.5 < flops["vit"] < 17.5 and 8 < flops["localizer"] < 11 and 0.5 < flops["answerer"] < 1.5


def test_random_runtime_materialises_in_target_dtypes():
    from sevila_tools.tiny import tiny_config

    rt = bench.build_random_runtime(tiny_config(), device="cpu", vit_dtype="bf16", t5_dtype="bf16")
    m = rt.model
    assert not any(p.is_meta for p in m.parameters())
    assert m.vision_model.encoder.layers[0].mlp.fc1.weight.dtype == torch.bfloat16
    assert m.vision_model.encoder.layers[0].layer_norm1.weight.dtype == torch.float32
    assert m.language_model.shared.weight.dtype == torch.bfloat16
    assert m.qformer_loc.layernorm.weight.dtype == torch.float32
    assert m.language_model.decoder.embed_tokens is m.language_model.shared
    w = m.qformer.encoder.layer[0].attention.attention.query.weight
    assert float(w.abs().max()) > 0 and float(w.std()) == pytest.approx(w.shape[1] ** -0.5, rel=0.1)
    frames = np.random.default_rng(0).integers(0, 255, (1, 4, 224, 224, 3), dtype=np.uint8)
    q = bench.make_questions(["v.mp4"], 1)[0]
    out = bench.fast_forward(rt, frames, [q.loc_text], [q.qa_text], 2, 5)
    assert torch.isfinite(out.yes).all() and torch.isfinite(out.letter_logits).all()
    assert float(out.yes.std()) > 0


def test_peak_memory_sees_a_temporary_allocation():
    dev = torch.device("cpu")
    with bench.PeakMemory(dev) as mem:
        x = torch.ones(64 * 2**20)  # 256 MiB, written
        del x
    assert mem.result["peak_bytes"] - mem.result["baseline_gib"] * 2**30 > 200 * 2**20


@pytest.mark.slow
def test_bench_entry_point_subprocess(tmp_path):
    exe = Path(sys.executable).with_name("sevila")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "b.json"
    proc = subprocess.run(
        [
            str(exe),
            "bench",
            "--size",
            "tiny",
            "--settings",
            "4:1",
            "--batch-sizes",
            "1",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--video-frames",
            "20",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ms per sample" in proc.stdout and "fast" in proc.stdout
    assert json.loads(out.read_text())["results"][0]["setting"] == "4:1"
