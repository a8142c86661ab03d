"""``sevila ablate``: settings grid, shared features across settings, result tables, resume."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sevila_tools.cli.app import app
from sevila_tools.errors import InputError
from sevila_tools.eval.ablate import (
    DEFAULT_GRID,
    AblationConfig,
    default_selectors,
    parse_grid,
    parse_names,
    plan_settings,
)
from sevila_tools.eval.datasets import get_dataset, load_annotations
from sevila_tools.eval.scorers import score_multiple_choice

REPO = Path(__file__).resolve().parents[1]
NEXTQA_COLUMNS = get_dataset("nextqa").columns
SELECTORS = "uniform,localizer,clip,moment_detr,oracle"
HEADER = "video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4"
ROWS = [
    "1001,90,320,240,what moves across the screen,4,0,DO,a cat,a dog,a square,a ball,a car",
    "1001,90,320,240,why does the square move,1,1,CW,wind,it is pushed,gravity,magic,nothing",
    # 160 s at 1 fps: 80 two-second clips > 75, so Moment-DETR needs its long-video rule here
    "1002,160,160,120,what colour comes after red,0,0,TN,green,blue,white,black,red",
    "1002,160,160,120,how many colours are shown,4,1,DC,one,two,three,five,four",
]


def _runner() -> CliRunner:
    return CliRunner()  # click >= 8.2: result.stderr is separate


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A NExT-QA-shaped csv (real header) over two synthetic videos (one longer than 150 s)."""
    from sevila_tools.synthetic import make_scene_video, make_video

    root = tmp_path_factory.mktemp("ablate_data")
    make_video(root / "1001.mp4", num_frames=90, fps=30)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
    make_scene_video(root / "1002.mp4", scenes=[(40, c) for c in colours], fps=1)
    (root / "val.csv").write_text(HEADER + "\n" + "\n".join(ROWS) + "\n")
    return root


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "ablate", "--dataset", "nextqa", "--annotations", str(data / "val.csv"), "--videos", str(data),
        "--out", str(out), "--model", "tiny-random", "--device", "cpu",
        "--cache-dir", str(out.parent / f"{out.name}_cache"), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def first_run(dataset, tmp_path_factory):
    """One end-to-end ``sevila ablate`` with counters on CLIP / Moment-DETR image encoders and the ViT."""
    from sevila_tools.runtime import SevilaRuntime
    from sevila_tools.selectors.clip import CLIPSelector
    from sevila_tools.selectors.moment_detr import MomentDETRSelector

    calls = {"clip": 0, "mdetr": 0, "vit_frames": 0}
    mp = pytest.MonkeyPatch()
    orig_clip, orig_mdetr, orig_vit = (
        CLIPSelector.image_embeddings,
        MomentDETRSelector.image_features,
        SevilaRuntime.vit,
    )

    def clip_emb(self, pixel_values):
        calls["clip"] += 1
        return orig_clip(self, pixel_values)

    def mdetr_feats(self, frames):
        calls["mdetr"] += 1
        return orig_mdetr(self, frames)

    def vit(self, frames):
        calls["vit_frames"] += len(frames)
        return orig_vit(self, frames)

    mp.setattr(CLIPSelector, "image_embeddings", clip_emb)
    mp.setattr(MomentDETRSelector, "image_features", mdetr_feats)
    mp.setattr(SevilaRuntime, "vit", vit)
    out = tmp_path_factory.mktemp("ablate_out") / "run"
    try:
        res = _runner().invoke(app, _args(dataset, out, "--selector", SELECTORS, "--grid", "8:2,16:4"))
    finally:
        mp.undo()
    assert res.exit_code == 0, (res.stdout, res.stderr)
    return out, calls, res


def _independent_display(pred_file: Path, csv_path: Path) -> dict:
    preds = {}
    for line in pred_file.read_text().splitlines():
        rec = json.loads(line)
        preds[rec["qid"]] = rec["prediction"]
    samples = load_annotations("nextqa", csv_path, csv_path.parent)
    return score_multiple_choice("nextqa", preds, samples)["display"]


# ---------------------------------------------------------------------------------------------- unit


def test_parse_grid_and_names():
    assert parse_grid("8:1, 16:4,8:1") == [(8, 1), (16, 4)]
    assert parse_grid([(32, 4), "16:2"]) == [(32, 4), (16, 2)]
    assert parse_grid(DEFAULT_GRID) == [(8, 1), (16, 1), (16, 4), (32, 4), (32, 8), (64, 8)]
    for bad in ("8-2", "8:", "a:1", "8:0", "4:8", "", "300:4"):
        with pytest.raises(InputError) as exc:
            parse_grid(bad)
        assert "\n" not in str(exc.value)
    with pytest.raises(InputError, match=r"keyframes \(8\) exceed frames \(4\)"):
        parse_grid("8:4,4:8")
    assert parse_names("clip, uniform,clip") == ["clip", "uniform"]
    assert parse_names(["a,b", "c"]) == ["a", "b", "c"]


def test_plan_settings_collapses_uniform():
    plan = plan_settings(["uniform", "clip"], [(8, 2), (16, 2), (16, 4)], ["concat", "voting"])
    got = [(s.selector, s.frames, s.keyframes, s.answerer, s.grid_entries) for s in plan]
    assert got == [
        ("uniform", 2, 2, "concat", ["8:2", "16:2"]),
        ("uniform", 2, 2, "voting", ["8:2", "16:2"]),
        ("uniform", 4, 4, "concat", ["16:4"]),
        ("uniform", 4, 4, "voting", ["16:4"]),
        ("clip", 8, 2, "concat", ["8:2"]),
        ("clip", 8, 2, "voting", ["8:2"]),
        ("clip", 16, 2, "concat", ["16:2"]),
        ("clip", 16, 2, "voting", ["16:2"]),
        ("clip", 16, 4, "concat", ["16:4"]),
        ("clip", 16, 4, "voting", ["16:4"]),
    ]
    assert plan[4].id == "clip_8to2_concat"


def test_oracle_reads_the_papers_4_uniform_frames_in_the_default_grid():
    """Table 9 / official frameqa: the oracle answers 4 uniform frames alone, whatever the grid's frame count;
    oracle_frames=0 takes the grid's candidates instead."""
    plan = plan_settings(["oracle"], parse_grid(DEFAULT_GRID), ["concat"])
    got = [(s.frames, s.keyframes, s.grid_entries) for s in plan]
    assert got == [(4, 1, ["8:1", "16:1"]), (4, 4, ["16:4", "32:4", "32:8", "64:8"])]
    own = plan_settings(["oracle"], [(32, 4)], ["concat"], {"oracle_frames": 0})
    assert [(s.frames, s.keyframes) for s in own] == [(32, 4)]


def test_default_selectors():
    from sevila_tools.selectors import available_selectors

    names, skipped = default_selectors(has_gold=True, options={}, random_weights=True)
    assert sorted(names) == [n for n in available_selectors() if n != "file"] and set(skipped) == {"file"}
    assert names[0] == "uniform" and names.index("localizer") < names.index("oracle")  # by rank
    names, skipped = default_selectors(has_gold=False, options={}, random_weights=False)
    assert "oracle" not in names and "moment_detr" not in names
    assert set(skipped) == {"oracle", "moment_detr", "file"}  # the file selector runs only with its file


def test_config_errors(tmp_path):
    with pytest.raises(InputError, match="bad --grid entry"):
        AblationConfig(dataset="nextqa", annotations=tmp_path / "a.csv", out=tmp_path, grid="8:x")
    with pytest.raises(ValueError, match="qvhighlights"):
        AblationConfig(dataset="qvhighlights", annotations=tmp_path / "a.jsonl", out=tmp_path)
    with pytest.raises(ValueError, match="exclude"):
        AblationConfig(
            dataset="nextqa", annotations=tmp_path / "a", out=tmp_path, resume=True, overwrite=True
        )


# ---------------------------------------------------------------------------------------------- end to end


def test_ablate_tables_match_scorer(dataset, first_run):
    out, _, res = first_run
    for name in ("results.md", "results.csv", "results.json", "results.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((out / "results.json").read_text())
    assert result["columns"] == list(NEXTQA_COLUMNS) == [
        "Why", "How", "Bef&Aft", "When", "Cnt", "Loc", "Other", "Acc_C", "Acc_T", "Acc_D", "Acc"]
    ids = [r["setting"] for r in result["rows"]]
    assert ids == [
        "uniform_2to2_concat", "uniform_4to4_concat", "localizer_8to2_concat", "localizer_16to4_concat",
        "clip_8to2_concat", "clip_16to4_concat", "moment_detr_8to2_concat", "moment_detr_16to4_concat",
        "oracle_4to2_concat", "oracle_4to4_concat",
    ]  # fmt: skip
    assert result["settings_run"] == 10 and result["settings_resumed"] == 0
    assert "RANDOM WEIGHTS" in (result["notice"] or "")

    csv_rows = {r["setting"]: r for r in csv.DictReader((out / "results.csv").open())}
    md = (out / "results.md").read_text()
    md_rows = [
        line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| Selector")
    ]
    assert len(md_rows) == 10
    for row, md_line in zip(result["rows"], md_rows, strict=True):
        pred_file = out / "runs" / row["setting"] / "predictions.jsonl"
        assert Path(row["predictions_file"]) == pred_file
        want = _independent_display(pred_file, dataset / "val.csv")
        assert row["display"] == want
        assert row["headline"] == want["Acc"]
        cells = [c.strip() for c in md_line.strip("|").split("|")]
        assert cells[0] == row["selector"] and cells[2] == "concat"
        for col, cell in zip(NEXTQA_COLUMNS, cells[3:-1], strict=True):
            assert cell == ("–" if want[col] is None else f"{want[col]:.2f}")
            got = csv_rows[row["setting"]][col]
            assert (got == "") if want[col] is None else float(got) == want[col]
        # every row records its full config
        conf = row["config"]
        assert conf["selector"] == row["selector"] and conf["keyframes"] == row["keyframes"]
        assert conf["frames"] == row["frames"] and conf["answerer"] == "concat"
        assert conf["model"] == "tiny-random" and conf["random_weights"] is True
        assert "versions" in conf and "selector_config" in conf
        assert json.loads(csv_rows[row["setting"]]["config"])["selector"] == row["selector"]

    by_id = {r["setting"]: r for r in result["rows"]}
    uni = by_id["uniform_4to4_concat"]
    assert uni["frames"] == 4 and uni["grid_entries"] == ["16:4"]
    assert "own 4 frames" in uni["config"]["frames_rule"] and "¹" in md and "n = k" in md
    mdetr = by_id["moment_detr_16to4_concat"]["config"]
    assert mdetr["selector_config"]["long_video"] == "sliding"
    assert mdetr["selector_config"]["frame_strategy"] == "top_window_uniform"
    assert mdetr["video_check"]["affected_videos"] == 1  # only the 160-s video has > 75 clips
    assert result["video_checks"]["moment_detr"]["first_affected"] == ["1002.mp4"]
    # the keyframes of every record are within the video and sorted
    oracle_file = out / "runs" / "oracle_4to4_concat" / "predictions.jsonl"
    for rec in map(json.loads, oracle_file.read_text().splitlines()):
        assert rec["selector"] == "oracle" and rec["keyframe_idx"] == sorted(rec["keyframe_idx"])
        assert len(rec["keyframe_idx"]) == 4


def test_ablate_reuses_features_across_settings(first_run):
    out, calls, _ = first_run
    result = json.loads((out / "results.json").read_text())
    # CLIP: one image-encoder pass per (video, candidate set): 2 videos x {8, 16} candidates, although
    # 2 settings x 4 questions were answered (two questions per video)
    assert calls["clip"] == 4
    # Moment-DETR clip features do not depend on the grid: one pass per video for both settings
    assert calls["mdetr"] == 2
    assert result["selector_memo"]["features"]["stores"] >= 6  # the process-wide memo holds them
    # ViT: each (video, number of frames) decoded + encoded once: 2 videos x {2, 4, 8, 16} frame sets
    vit = result["vit_cache"]
    assert vit["misses"] == 8 and vit["writes"] == 8 and vit["hits"] == 10 * 2 - 8
    # frames through the ViT: the 8 frame sets (2 x 30) plus keyframes outside the candidates
    # (moment_detr picks frames inside its window, not necessarily candidates: at most 4 x (2 + 4))
    assert 2 * 30 <= calls["vit_frames"] <= 2 * 30 + 4 * (2 + 4)


def test_ablate_resume_does_no_model_work(dataset, first_run, monkeypatch, tmp_path):
    out, _, _ = first_run
    work = tmp_path / "run"
    shutil.copytree(out, work)
    shutil.copytree(out.parent / f"{out.name}_cache", tmp_path / "run_cache")
    before = json.loads((work / "results.json").read_text())
    runner = _runner()

    # without --resume / --overwrite: one-line refusal, nothing loaded
    res = runner.invoke(app, _args(dataset, work, "--selector", SELECTORS, "--grid", "8:2,16:4"))
    assert res.exit_code != 0 and "--resume" in res.stderr and len(res.stderr.strip().splitlines()) == 1

    # the table is computed from the prediction files: edit one (still complete) and check exact values
    edited = work / "runs" / "localizer_8to2_concat" / "predictions.jsonl"
    recs = [json.loads(x) for x in edited.read_text().splitlines()]
    right = {"1001_0", "1002_0"}  # DO and TN right; CW and DC wrong
    for r in recs:
        r["prediction"] = r["answer"] if r["qid"] in right else (r["answer"] + 1) % 5
    edited.write_text("".join(json.dumps(r) + "\n" for r in recs))

    def boom(*a, **k):
        raise AssertionError("model loaded on a finished resume")

    monkeypatch.setattr("sevila_tools.loading.load_runtime", boom)
    res = runner.invoke(app, _args(dataset, work, "--selector", SELECTORS, "--grid", "8:2,16:4", "--resume"))
    assert res.exit_code == 0, (res.stdout, res.stderr)
    after = json.loads((work / "results.json").read_text())
    assert after["settings_run"] == 0 and after["settings_resumed"] == 10
    assert all(r["status"] == "resumed" for r in after["rows"])
    assert [r["config"] for r in after["rows"]] == [r["config"] for r in before["rows"]]
    for b, a in zip(before["rows"], after["rows"], strict=True):
        if a["setting"] != "localizer_8to2_concat":
            assert a["display"] == b["display"]
    loc = next(r for r in after["rows"] if r["setting"] == "localizer_8to2_concat")
    assert loc["display"] == {
        "Why": 0.0, "How": None, "Bef&Aft": 100.0, "When": None, "Cnt": 0.0, "Loc": None, "Other": 100.0,
        "Acc_C": 0.0, "Acc_T": 100.0, "Acc_D": 50.0, "Acc": 50.0,
    }  # fmt: skip
    assert (
        "| localizer | 8→2 | concat | 0.00 | – | 100.00 | – | 0.00 | – | 100.00 | 0.00 | 100.00 | 50.00 | 50.00 "
        "| 4 |" in (work / "results.md").read_text()
    )
    monkeypatch.undo()

    # an interrupted setting (2 of 4 records, no summary yet) is continued; the others are not re-run
    part = work / "runs" / "clip_16to4_concat" / "predictions.jsonl"
    lines = part.read_text().splitlines()
    part.write_text("\n".join(lines[:2]) + "\n")
    (work / "runs" / "clip_16to4_concat" / "summary.json").unlink()
    res = runner.invoke(app, _args(dataset, work, "--selector", SELECTORS, "--grid", "8:2,16:4", "--resume"))
    assert res.exit_code == 0, (res.stdout, res.stderr)
    again = json.loads((work / "results.json").read_text())
    assert again["settings_run"] == 1 and again["settings_resumed"] == 9
    assert [r["setting"] for r in again["rows"] if r["status"] == "run"] == ["clip_16to4_concat"]
    assert part.read_text().splitlines() == lines  # same records, in annotation order
    assert [r["display"] for r in again["rows"]] == [r["display"] for r in after["rows"]]

    # a finished setting written with other options is refused
    res = runner.invoke(
        app,
        _args(
            dataset, work, "--selector", "moment_detr", "--grid", "8:2", "--resume", "--long-video", "stride"
        ),
    )
    assert res.exit_code != 0 and "'long_video': 'sliding'" in res.stderr and "other settings" in res.stderr


def test_ablate_selector_errors(dataset, tmp_path):
    runner = _runner()
    res = runner.invoke(app, _args(dataset, tmp_path / "o", "--selector", "clip,nope", "--grid", "8:2"))
    assert res.exit_code != 0 and "unknown selector 'nope'" in res.stderr
    # without a checkpoint, only tiny-random can run Moment-DETR
    args = _args(dataset, tmp_path / "o", "--selector", "moment_detr", "--grid", "8:2")
    args[args.index("tiny-random")] = "some/real-model"
    res = runner.invoke(app, args)
    assert res.exit_code != 0 and "--mdetr-checkpoint" in res.stderr
    # --long-video refuse would stop on the 160-s video: refused up front
    res = runner.invoke(
        app,
        _args(
            dataset, tmp_path / "o", "--selector", "moment_detr", "--grid", "8:2", "--long-video", "refuse"
        ),
    )
    assert res.exit_code != 0 and "1 video(s) exceed" in res.stderr and "sliding" in res.stderr
    # oracle needs gold answers
    lines = (dataset / "val.csv").read_text().splitlines()
    nogold = tmp_path / "nogold.csv"
    nogold.write_text(
        "\n".join([lines[0]] + [",".join(r.split(",")[:5] + [""] + r.split(",")[6:]) for r in lines[1:]])
        + "\n"
    )
    args = _args(dataset, tmp_path / "o", "--selector", "oracle", "--grid", "8:2")
    args[args.index(str(dataset / "val.csv"))] = str(nogold)
    res = runner.invoke(app, args)
    assert res.exit_code != 0 and "gold answers" in res.stderr
    assert not (tmp_path / "o" / "results.json").exists()


def test_ablate_bad_grid_entry_point(tmp_path):
    """Installed ``sevila`` script: a bad grid is one stderr line and exit code 2, before anything loads."""
    exe = REPO / ".venv" / "bin" / "sevila"
    if not exe.exists():
        pytest.skip("installed entry point not found")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    grid, msg = "16:4,4:8", "bad --grid entry 4:8: keyframes (8) exceed frames (4)"
    p = subprocess.run(
        [str(exe), "ablate", "--dataset", "nextqa", "--annotations", str(tmp_path / "missing.csv"),
         "--videos", str(tmp_path), "--out", str(tmp_path / "o"), "--grid", grid],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and msg in lines[0], p.stderr
    assert not (tmp_path / "o").exists()


def test_run_ablation_library_voting_without_gold(dataset, tiny_runtime, tmp_path):
    """Library call with a loaded runtime: two answerers, --limit, annotations without gold answers."""
    from sevila_tools.eval.ablate import run_ablation

    lines = (dataset / "val.csv").read_text().splitlines()
    nogold = dataset / "nogold.csv"
    nogold.write_text(
        "\n".join([lines[0]] + [",".join(r.split(",")[:5] + [""] + r.split(",")[6:]) for r in lines[1:]])
        + "\n"
    )
    res = run_ablation(
        {
            "dataset": "nextqa", "annotations": nogold, "videos": dataset, "out": tmp_path / "o",
            "selectors": "uniform,random", "grid": "8:2", "answerers": "concat,voting", "limit": 2,
            "cache_dir": tmp_path / "cache", "seed": 3,
        },
        runtime=tiny_runtime,
        progress=False,
    )  # fmt: skip
    assert [r.setting for r in res.rows] == [
        "uniform_2to2_concat", "uniform_2to2_voting", "random_8to2_concat", "random_8to2_voting",
    ]  # fmt: skip
    for row in res.rows:
        assert row.metrics is None and row.headline is None and row.n_total == 2 and row.predictions == 2
        recs = [json.loads(x) for x in Path(row.predictions_file).read_text().splitlines()]
        assert [r["qid"] for r in recs] == ["1001_0", "1001_1"]  # --limit 2: the first two rows
        assert all(r["answerer"] == row.answerer for r in recs)
        if row.answerer == "voting":
            assert all(len(r["votes"]) == 2 for r in recs)
    assert res.rows[2].config["selector_options"] == {"seed": 3}
    assert res.rows[2].config["selector_config"] == {"seed": 3}
    assert any("no gold answers" in n for n in res.notes) and any("--limit 2" in n for n in res.notes)
    md = (tmp_path / "o" / "results.md").read_text()
    assert md.count("| – | – | – | – | – | – | – | – | – | – | – | 0/2 |") == 4
    assert (tmp_path / "o" / "results.png").stat().st_size > 0


def test_notes_say_each_fact_once(dataset, first_run, tiny_runtime, tmp_path):
    """A skipped video, --limit and the oracle: one note each, not one per setting; the oracle described once."""
    from sevila_tools.eval.ablate import run_ablation
    from sevila_tools.selectors import get_selector_class

    md = (first_run[0] / "results.md").read_text()
    notes = [line.split(". ", 1)[1] for line in md.splitlines() if line[:1].isdigit()]
    assert len(notes) == len(set(notes))
    assert f"oracle reads the gold answers. {get_selector_class('oracle').description}" in notes
    assert md.count("upper bound") + md.count("Upper bound") == 1
    missing = dataset / "missing.csv"
    missing.write_text((dataset / "val.csv").read_text() + ROWS[0].replace("1001,", "9999,", 1) + "\n")
    res = run_ablation(
        {"dataset": "nextqa", "annotations": missing, "videos": dataset, "out": tmp_path / "o", "limit": 5,
         "selectors": "uniform,localizer", "grid": "4:2", "skip_missing": True, "cache": False},
        runtime=tiny_runtime, progress=False,
    )  # fmt: skip
    assert [r.note for r in res.rows] == ["1 of 5 questions have no prediction (missing video/error)"] * 2
    assert res.notes == [
        "¹ these selectors decide how many frames to read (uniform: k frames by the midpoint rule with n = k), so "
        "grid entries that read the same frames share one row.",
        "--limit 5: scored on the first 5 questions only.",
        "1 of 5 questions skipped (missing videos): not scored.",
        "feature cache off (--no-cache): ViT features were recomputed for every setting.",
    ]


def test_selectors_listing_marks_gold_readers_once():
    """The oracle's description does not repeat what ``needs_gold`` already prints."""
    res = _runner().invoke(app, ["selectors"], env={"COLUMNS": "200"})
    line = next(x for x in res.stdout.splitlines() if x.startswith("oracle: "))
    assert line == ("oracle: Upper bound, not a method: right if one of 4 uniform frames alone gives the gold "
                    "answer (paper Table 9). (needs the gold answer)")
