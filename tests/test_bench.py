"""``sevila bench`` and ``sevila_tools.benchmarks``: the reference path (``generate``, one question at a time)
equals the library's pipeline, the reports have their documented shape, and the library never imports them."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sevila_tools.benchmarks import full_size, harness, inputs, runner, stages
from sevila_tools.benchmarks.decoding import DecodeKnobs, decode, decode_all, make_encoder
from sevila_tools.benchmarks.reference import reference_batch, reference_forward
from sevila_tools.encoding import FrameSpec
from sevila_tools.errors import InputError
from sevila_tools.runtime import Precision

ATOL = 1e-5  # fp32 agreement required between the two paths
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench_inputs(tiny_runtime, tmp_path_factory):
    """Two questions on two synthetic videos, 8 candidate frames each, encoded by the library's encoder."""
    folder = tmp_path_factory.mktemp("bench")
    questions = inputs.make_questions(inputs.make_videos(folder, 2, num_frames=40), 2)
    encoder = make_encoder(tiny_runtime, DecodeKnobs())
    encoded = [encoder.encode(FrameSpec(q.video, 8)) for q in questions]
    return questions, encoded


def _check_agreement(runtime, outs, refs):
    """Same scores (fp32, 1e-5), keyframes, answers and step-0 tokens."""
    yes = torch.tensor([o.selection.candidate_scores for o in outs])
    ref_yes = torch.stack([r.yes for r in refs])
    assert yes.shape == ref_yes.shape == (2, 8)
    assert float(yes.std(dim=1).min()) > 1e-3  # scores really vary, so top-k is a real choice
    torch.testing.assert_close(yes, ref_yes, atol=ATOL, rtol=0)
    probs = torch.tensor([o.answer.probs for o in outs])
    torch.testing.assert_close(
        probs, torch.stack([r.letter_logits.softmax(-1) for r in refs]), atol=ATOL, rtol=0
    )
    assert [o.selection.candidate_positions for o in outs] == [r.positions for r in refs]
    assert [o.answer.index for o in outs] == [r.prediction for r in refs]
    assert [o.answer.step0_token for o in outs] == [runtime.token_str(r.step0_token) for r in refs]
    assert all(s["localizer"] >= 1 and s["answerer"] >= 1 for s in (r.generate_steps for r in refs))
    agreement = stages.compare_outputs(runtime, outs, refs)
    assert agreement["keyframes_equal"] and agreement["answers_equal"] and agreement["step0_equal"]
    assert agreement["max_abs_diff_yes"] <= ATOL and agreement["max_abs_diff_yes_prob"] <= ATOL


def test_reference_path_equals_the_pipeline(tiny_runtime, bench_inputs):
    questions, encoded = bench_inputs
    loc = [q.loc_text for q in questions]
    tok = tiny_runtime.tokenizer
    assert len(tok(loc[0]).input_ids) != len(tok(loc[1]).input_ids)  # the pipeline pads across questions
    frames = [ev.frames.frames for ev in encoded]
    refs = reference_batch(tiny_runtime, frames, [(q.loc_text, q.qa_text) for q in questions], 2, 5)
    pipe = stages.make_pipeline(tiny_runtime, DecodeKnobs())
    items = [(ev, q.query) for ev, q in zip(encoded, questions, strict=True)]
    for qpc in (2, 1):  # both questions in one call (the GPU layout), one question per call (the CPU default)
        _check_agreement(tiny_runtime, stages.forward_chunks(pipe, items, 2, qpc), refs)
    no = torch.tensor([row[1] for row in pipe.frame_logits(items)])
    torch.testing.assert_close(no, torch.stack([r.no for r in refs]), atol=ATOL, rtol=0)


def test_reference_keyframes_are_topk_of_its_own_scores(tiny_runtime, bench_inputs):
    questions, encoded = bench_inputs
    q = questions[0]
    out = reference_forward(tiny_runtime, encoded[0].frames.frames, q.loc_text, q.qa_text, 3, 5)
    order = sorted(range(8), key=lambda i: (-float(out.yes[i]), i))[:3]
    assert out.positions == sorted(order)
    assert out.prediction == int(out.letter_logits.argmax())


def test_answerer_only_reads_uniform_candidates(tiny_runtime, bench_inputs):
    questions, encoded = bench_inputs
    sub = stages.uniform_subset(encoded[1].frames, 2)
    assert sub.indices == [encoded[1].frames.indices[i] for i in (2, 6)]  # midpoints of 2 segments of 8
    pipe = stages.make_pipeline(tiny_runtime, DecodeKnobs())
    (ans,) = pipe.answer_frames([(pipe.encoder.from_frames(questions[1].video, sub), questions[1].query)])
    raw = tiny_runtime.vit(encoded[1].frames.frames[[2, 6]])
    assert ans.index == tiny_runtime.answer(raw[None], [questions[1].qa_text], 5).predictions[0]


def test_decode_workers_give_the_same_frames(bench_inputs):
    questions, encoded = bench_inputs
    paths = [q.video for q in questions]
    pooled = decode_all(paths, 8, DecodeKnobs(workers=2, prefetch=1))  # a DecodePool of 2 processes
    split = decode(paths[0], 8, DecodeKnobs(workers=2))  # one video split across 2 processes
    for ev, got in zip(encoded, pooled, strict=True):
        assert got.indices == ev.indices and np.array_equal(got.frames, ev.frames.frames)
    assert split.indices == encoded[0].indices and np.array_equal(split.frames, encoded[0].frames.frames)


def _invoke(args):
    from sevila_tools.cli.app import app

    return CliRunner().invoke(app, args)


def test_bench_cli_json_report(tmp_path):
    out_file = tmp_path / "bench.json"
    args = "bench --size tiny --reference --json --settings 8:2 --batch-sizes 1,2 --repeats 1 --warmup 0"
    res = _invoke([*args.split(), "--video-frames", "30", "--out", str(out_file)])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert json.loads(out_file.read_text()) == report

    assert {(r["setting"], r["batch_size"]) for r in report["results"]} == {("8:2", 1), ("8:2", 2)}
    for row in report["results"]:
        assert set(row["stages"]) == set(stages.STAGES)
        for st in row["stages"].values():
            assert st["s"] >= 0 and st["s_per_sample"] == pytest.approx(st["s"] / row["batch_size"], abs=2e-6)
        assert row["memory"]["kind"].startswith("process_rss") and row["memory"]["peak_bytes"] > 50e6
    refs = {r["path"]: r for r in report["reference"]}
    assert set(refs) == set(stages.REFERENCE_PATHS)
    ref, eos = refs["reference"], refs["reference_trained_eos"]
    assert ref["questions"] == 2 and set(ref["stages"]) == set(stages.REFERENCE_STAGES)
    assert ref["generate_steps"]["localizer"] >= 1
    assert eos["generate_steps"]["localizer"] <= 2 and eos["generate_steps"]["answerer"] <= 3
    (agree,) = report["agreement"]
    assert agree["keyframes_equal"] and agree["answers_equal"] and agree["max_abs_diff_yes"] <= ATOL
    assert agree["trained_eos_answers_equal"]  # scores[1] is read before any early stop
    # the headline is against the reference stopped where a trained model stops (largest batch here: 2)
    fast2 = next(r for r in report["results"] if r["batch_size"] == 2)["stages"]["chain"]["s_per_sample"]
    eos_chain = eos["stages"]["chain"]["s_per_sample"]
    assert report["speedup_vs_trained_eos"] == pytest.approx(eos_chain / fast2, rel=0.02)
    assert report["speedup_vs_30_steps"] == pytest.approx(
        ref["stages"]["chain"]["s_per_sample"] / fast2, rel=0.02
    )
    assert "speedup" not in report and "trained model" in report["speedup_basis"]

    machine = report["machine"]
    assert machine["torch"] == torch.__version__ and machine["cpu_model"] and machine["logical_cores"] >= 1
    from sevila_tools.tiny import tiny_model

    assert report["model"]["parameters"]["total"] == sum(p.numel() for p in tiny_model().parameters())
    assert report["model"]["random_weights"] is True and report["paper"]["sevila_s_per_sample"] == 3.28
    assert "scenarios" not in report


def test_bench_cli_scenarios(tmp_path):
    args = "bench --scenario single,dataset --json --settings 8:2 --repeats 1 --warmup 0 --videos agent"
    more = ["--dataset-videos", "2", "--questions-per-video", "2", "--duration-scale", "0.02"]
    res = _invoke([*args.split(), *more, "--decode-workers", "2", "--video-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["results"] == [] and "agreement" not in report
    sc = report["scenarios"]
    assert sc["config"]["decode_workers"] == 2 and sc["config"]["feature_cache"] is False
    assert all(sc["video_api"].values())  # parallel decoding APIs of the video module and the encoder
    (row,) = sc["single"]
    assert row["video"] == "agent" and row["resolution"] == "640x360" and row["seconds"] == 2.4
    assert set(row["stages"]) == {"decode", "vit", "chain", "total", "decode_one_reader"}
    assert row["decode_target"] == 0.5 and isinstance(row["decode_target_met"], bool)
    assert len(row["decode_vs_one_reader_runs"]) == 1  # one paired ratio per repeat
    data = sc["dataset"]
    assert data["videos"] == 2 and data["questions"] == 4 and data["questions_per_s"] > 0
    assert {"decode_alone", "model_alone", "wall", "decode_wait", "model_busy"} <= set(data["stages"])
    assert data["overlap_target"] == 1.15 and 0 < data["decode_share"] < 1
    assert len(data["overlap_runs"]) == 1 and data["stages"]["cores_used"]["s"] > 0
    assert data["verdict"].startswith("met: " if data["overlap_target_met"] else "missed: ")
    assert len(list(tmp_path.glob("nextqa_*.mp4"))) == 2 and len(list(tmp_path.glob("agent_*.mp4"))) == 1


def test_bench_cli_rejects_bad_input():
    res = _invoke(["bench", "--settings", "4:8", "--json"])
    assert res.exit_code != 0 and "keyframes <= frames" in res.output
    res = _invoke(["bench", "--batch-sizes", "one", "--json"])
    assert res.exit_code != 0 and "batch sizes" in res.output
    res = _invoke(["bench", "--scenario", "fast", "--json"])
    assert res.exit_code != 0 and "--scenario" in res.output
    res = _invoke(["bench", "--scenario", "single", "--videos", "imax", "--json"])
    assert res.exit_code != 0 and "--videos" in res.output


def test_parsers():
    assert harness.parse_settings("32:4, 16:4,32:4") == [harness.Setting(32, 4), harness.Setting(16, 4)]
    assert harness.parse_batch_sizes("8,1,8") == [1, 8]
    for bad in ("32", "4:0", "a:b", ""):
        with pytest.raises(InputError):
            harness.parse_settings(bad)
    with pytest.raises(InputError):
        harness.parse_batch_sizes("0")
    assert runner.parse_parts("all") == ["stages", "single", "dataset"]
    assert runner.parse_parts("dataset,single") == ["single", "dataset"]
    assert runner.parse_videos("long,nextqa") == ("long", "nextqa")


def test_scenario_video_shape_and_gop(tmp_path):
    shape = inputs.SHAPES["nextqa"]
    path = inputs.scenario_video(tmp_path, shape, scale=2.5 / 44)  # 2.5 s
    assert inputs.scenario_video(tmp_path, shape, scale=2.5 / 44) == path  # written once
    with av.open(path) as c:
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height) == (640, 480)
        kinds = [(p.is_keyframe, p.pts) for p in c.demux(s) if p.size]
    assert sum(k for k, _ in kinds) == 1  # keyint 250: one keyframe in 75 frames
    pts = [p for _, p in kinds]
    assert pts != sorted(pts)  # B-frames: decode order differs from presentation order


def test_full_size_parameter_counts_on_meta():
    model = full_size.build_meta_model()
    counts = full_size.part_parameter_counts(model)
    assert counts["vision_model"] == 985_952_256  # EVA ViT-g/14 ~ 985.9 M
    assert counts["answerer"] == counts["localizer"] == 106_739_968
    assert counts["language_model"] == 2_849_757_184  # Flan-T5-XL ~ 2.85 B (lm_head untied, embedding shared)
    cfg = model.config
    assert cfg.text_config.dense_act_fn == "gelu" and cfg.text_config.is_gated_act
    assert (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2 + 1 == 257
    assert model.language_model.encoder.embed_tokens is model.language_model.shared
    # weight memory: all fp32 = 4 bytes per parameter; GPU policy (ViT fp16 matrices, T5 bf16) ~ 7.94 GiB
    assert full_size.weight_bytes(model, Precision()) == 4 * counts["total"]
    gpu = full_size.weight_bytes(model, Precision(vit=torch.float16, t5=torch.bfloat16))
    assert 7.9 < gpu / 2**30 < 8.0
    flops = full_size.estimate_flops(cfg, harness.Setting(32, 4), loc_len=70, qa_len=77)
    assert 15.5 < flops["vit"] < 17.5 and 8 < flops["localizer"] < 11 and 0.5 < flops["answerer"] < 1.5


def test_random_runtime_materialises_in_target_dtypes(tmp_path):
    from sevila_tools.tiny import tiny_config
    from sevila_tools.video import SampledFrames

    rt = full_size.build_random_runtime(tiny_config(), device="cpu", vit_dtype="bf16", t5_dtype="bf16")
    m = rt.model
    assert not any(p.is_meta for p in m.parameters())
    assert m.vision_model.encoder.layers[0].mlp.fc1.weight.dtype == torch.bfloat16
    assert m.vision_model.encoder.layers[0].layer_norm1.weight.dtype == torch.float32
    assert m.language_model.shared.weight.dtype == torch.bfloat16
    assert m.qformer_loc.layernorm.weight.dtype == torch.float32
    assert m.language_model.decoder.embed_tokens is m.language_model.shared
    w = m.qformer.encoder.layer[0].attention.attention.query.weight
    assert float(w.abs().max()) > 0 and float(w.std()) == pytest.approx(w.shape[1] ** -0.5, rel=0.1)
    pixels = np.random.default_rng(0).integers(0, 255, (4, 224, 224, 3), dtype=np.uint8)
    frames = SampledFrames(
        frames=pixels, indices=[0, 1, 2, 3], timestamps=[0.0, 0.1, 0.2, 0.3], edges=[], fps=10.0,
        num_video_frames=4, padded=False, decoder="pyav",
    )  # fmt: skip
    pipe = stages.make_pipeline(rt, DecodeKnobs())
    q = inputs.make_questions(["v.mp4"], 1)[0]
    (out,) = pipe.forward([(pipe.encoder.from_frames("v.mp4", frames), q.query)], 2)
    scores = torch.tensor(out.selection.candidate_scores)
    assert torch.isfinite(scores).all() and float(scores.std()) > 0 and np.isfinite(out.answer.probs).all()


def test_peak_memory_sees_a_temporary_allocation():
    with harness.PeakMemory(torch.device("cpu")) as mem:
        x = torch.ones(64 * 2**20)  # 256 MiB, written
        del x
    assert mem.result["peak_bytes"] - mem.result["baseline_gib"] * 2**30 > 200 * 2**20


def test_library_never_imports_the_benchmarks():
    for path in (REPO / "sevila_tools").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            assert not any("benchmarks" in n or n.endswith(".bench") for n in names), path
    code = "import sys, sevila_tools.pipeline, sevila_tools.tools; print(any('benchmarks' in m for m in sys.modules))"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )


@pytest.mark.slow
def test_bench_entry_point_subprocess(tmp_path):
    exe = Path(sys.executable).with_name("sevila")
    out = tmp_path / "b.json"
    args = "bench --size tiny --settings 4:1 --batch-sizes 1 --repeats 1 --warmup 0 --video-frames 20 --out"
    proc = subprocess.run(
        [str(exe), *args.split(), str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ms per sample" in proc.stdout and "pipeline" in proc.stdout
    assert json.loads(out.read_text())["results"][0]["setting"] == "4:1"
