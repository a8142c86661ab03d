"""Dataset specs and annotation loaders on the real NExT-QA / QVHighlights files and small hand-made files."""

from __future__ import annotations

import csv
import json
import sys
import types
from collections import Counter
from pathlib import Path

import pytest

from sevila_tools.errors import InputError, VideoError
from sevila_tools.eval.datasets import (
    Sample,
    available_datasets,
    count_empty_windows,
    get_dataset,
    load_annotations,
    preflight,
)


@pytest.fixture(scope="module")
def nextqa_val(real_data: Path) -> list[Sample]:
    d = real_data / "nextqa"
    return load_annotations(
        "nextqa", d / "val.csv", videos_root="/videos", video_map=d / "map_vid_vidorID.json"
    )


def _write_jsonl(path: Path, records: list[dict], final_newline: bool = True) -> Path:
    text = "\n".join(json.dumps(r) for r in records)
    path.write_text(text + ("\n" if final_newline else ""), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------- NExT-QA


def test_registered_datasets_and_option_counts() -> None:
    assert available_datasets() == ("how2qa", "needleqa", "nextqa", "star", "tvqa", "vlep", "qvhighlights")
    specs = [get_dataset(n) for n in available_datasets()]
    assert {s.name: s.num_options for s in specs if s.task == "multiple_choice"} == {
        "nextqa": 5, "star": 4, "how2qa": 4, "tvqa": 5, "vlep": 2, "needleqa": 5}


def test_nextqa_csv_counts(nextqa_val: list[Sample]) -> None:
    samples = nextqa_val
    assert len(samples) == 4996
    assert len({s.video_id for s in samples}) == 570
    assert len({s.qid for s in samples}) == 4996
    types_ = Counter(s.qtype for s in samples)
    assert types_ == {"CW": 1924, "TN": 895, "CH": 683, "TC": 663, "DO": 305, "DL": 295, "DC": 177, "TP": 54}
    cats = Counter(s.qtype[0] for s in samples)
    assert cats == {"C": 2607, "T": 1612, "D": 777}
    assert Counter(s.answer for s in samples) == {0: 1013, 1: 1013, 2: 991, 3: 967, 4: 1012}
    assert all(len(s.options) == 5 and s.dataset == "nextqa" for s in samples)


def test_nextqa_csv_first_row_conversion(nextqa_val: list[Sample], real_data: Path) -> None:
    s = nextqa_val[0]
    assert s.qid == "4010069381_6"
    assert s.video_id == "4010069381"
    assert s.question == "how do the two man play the instrument?"
    assert s.options == [
        "roll the handle.",
        "tap their feet.",
        "strum the string.",
        "hit with sticks.",
        "pat with hand.",
    ]
    assert s.answer == 0 and s.qtype == "CH"
    assert s.extra["sevila_qid"] == "CH_4010069381_6"
    vmap = json.loads((real_data / "nextqa" / "map_vid_vidorID.json").read_text())
    assert s.video == str(Path("/videos") / (vmap["4010069381"] + ".mp4"))
    with (real_data / "nextqa" / "val.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    for t, row in zip(nextqa_val, rows, strict=True):
        # SeViLA appends unconditionally: the one val question already ending in "?" gets "??"
        assert t.question == row["question"] + "?"
        assert t.options == [row[f"a{i}"] + "." for i in range(5)]
        assert t.video == str(Path("/videos") / (vmap[t.video_id] + ".mp4"))
    assert sum(t.question.endswith("??") for t in nextqa_val) == 1


def test_nextqa_csv_without_map_or_root(real_data: Path) -> None:
    path = real_data / "nextqa" / "val.csv"
    no_map = load_annotations("nextqa", path, videos_root="/r", video_ext="avi")
    assert no_map[0].video == str(Path("/r") / "4010069381.avi")
    stems = load_annotations("nextqa", path, video_map=real_data / "nextqa" / "map_vid_vidorID.json")
    assert stems[0].video.endswith("/4010069381") and not stems[0].video.endswith(".mp4")
    # keys are unique and equal f"{video}_{qid}" from an independent csv read
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [f"{r['video']}_{r['qid']}" for r in rows] == [s.qid for s in no_map]


def test_nextqa_map_missing_video(tmp_path: Path, real_data: Path) -> None:
    with pytest.raises(InputError, match="not in the video map"):
        load_annotations("nextqa", real_data / "nextqa" / "val.csv", video_map={"1": "0000/1"})


# ---------------------------------------------------------------------------------------------------- QVHighlights


def test_qvhighlights_val(real_data: Path) -> None:
    path = real_data / "qvhighlights" / "highlight_val_release.jsonl"
    assert not path.read_bytes().endswith(b"\n")
    samples = load_annotations("qvhighlights", path, videos_root="/qvh")
    assert len(samples) == 1550
    assert len({s.video_id for s in samples}) == 1519
    assert sum(len(s.windows) > 1 for s in samples) == 530
    first = samples[0]
    assert first.qid == "2579" and first.duration == 150
    assert first.windows == [[82.0, 150.0]]
    assert first.video == str(Path("/qvh") / "NUsG9BgSes0_210.0_360.0.mp4")
    assert first.extra["relevant_clip_ids"][0] == 41 and len(first.extra["saliency_scores"][0]) == 3
    assert {s.duration for s in samples} > {150, 126}


def test_qvhighlights_single_record(real_data: Path) -> None:
    samples = load_annotations("qvhighlights", real_data / "qvhighlights" / "example_queries.jsonl")
    assert len(samples) == 1 and samples[0].qid == "8056"
    assert samples[0].question == "Chef makes pizza and cuts it up."


def test_qvhighlights_sevila_json(tmp_path: Path) -> None:
    rec = {
        "video": "abc_0.0_150.0",
        "qid": "QVHighlight_12",
        "query": "a dog.",
        "duration": 150,
        "relevant_windows": [[0, 10], [20, 30]],
    }
    path = tmp_path / "qvh.json"
    path.write_text(json.dumps([rec]))
    (s,) = load_annotations("qvhighlights", path)
    assert (
        s.qid == "12"
        and s.windows == [[0.0, 10.0], [20.0, 30.0]]
        and s.extra["sevila_qid"] == "QVHighlight_12"
    )


# ---------------------------------------------------------------------------------------------------- other raw formats


def test_star_raw(tmp_path: Path) -> None:
    def choices(texts: list[str]) -> list[dict]:
        return [{"choice_id": i, "choice": t, "choice_program": []} for i, t in enumerate(texts)]

    recs = [
        {
            "question_id": "Interaction_T1_13",
            "question": "Which object was tidied up by the person?",
            "video_id": "6H78U",
            "start": 11.1,
            "end": 19.6,
            "answer": "The clothes.",
            "choices": choices(["The closet/cabinet.", "The blanket.", "The clothes.", "The table."]),
            "question_program": [],
            "situations": {},
        },
        {
            "question_id": "Feasibility_T5_7",
            "question": "What will the person do next?",
            "video_id": "ZS9XR",
            "start": 0.0,
            "end": 9.5,
            "answer": "Sit on the bed.",
            "choices": choices(["Sit on the bed.", "Open the door.", "Eat.", "Sleep."]),
        },
    ]
    path = tmp_path / "STAR_val.json"
    path.write_text(json.dumps(recs))
    s = load_annotations("star", path, videos_root="/charades")
    assert [x.qid for x in s] == ["Interaction_T1_13", "Feasibility_T5_7"]
    assert [x.qtype for x in s] == ["Interaction", "Feasibility"]
    assert [x.answer for x in s] == [2, 0]
    assert s[0].options[2] == "The clothes." and s[0].question == "Which object was tidied up by the person?"
    assert (s[0].start, s[0].end) == (11.1, 19.6)
    assert s[0].video == str(Path("/charades") / "6H78U.mp4")
    recs[0]["answer"] = "Nothing."
    path.write_text(json.dumps(recs))
    with pytest.raises(InputError, match="record 0"):
        load_annotations("star", path)


def test_how2qa_and_tvqa_jsonl(tmp_path: Path) -> None:
    how = [
        {
            "vid_name": "v_abc_1",
            "ts": "12.5-40.0",
            "q": "what is he holding?",
            "a0": "a cup",
            "a1": "a pen",
            "a2": "a knife",
            "a3": "a phone",
            "answer_idx": 3,
        },
        {
            "vid_name": "v_def_2",
            "ts": "0-15",
            "q": "where is she?",
            "a0": "x",
            "a1": "y",
            "a2": "z",
            "a3": "w",
            "answer_idx": "1",
        },
    ]
    s = load_annotations(
        "how2qa", _write_jsonl(tmp_path / "how2qa_val_release.jsonl", how, final_newline=False)
    )
    assert [x.qid for x in s] == ["HOW2QA_0", "HOW2QA_1"]
    assert [x.answer for x in s] == [3, 1]
    assert (s[0].start, s[0].end) == (12.5, 40.0) and s[0].qtype == "HOW2QA"
    assert s[0].question == "what is he holding?" and len(s[0].options) == 4

    tv = [
        {
            "vid_name": "friends_s01e01_seg02_clip_00",
            "ts": "60.32-66.75",
            "q": "Who sat down?",
            "a0": "A",
            "a1": "B",
            "a2": "C",
            "a3": "D",
            "a4": "E",
            "answer_idx": 4,
            "qid": 7,
            "show_name": "Friends",
            "sub": [{"text": "unused"}],
        }
    ]
    (t,) = load_annotations("tvqa", _write_jsonl(tmp_path / "tvqa_val.jsonl", tv))
    assert t.qid == "TVQA_0" and t.answer == 4 and len(t.options) == 5 and (t.start, t.end) == (60.32, 66.75)
    assert "sub" not in t.extra


def test_vlep_jsonl(tmp_path: Path) -> None:
    recs = [
        {
            "example_id": 20142,
            "vid_name": "friends_s03e09_seg02_clip_07_ep",
            "ts": [38.18, 40.95],
            "events": ["Rachel will leave.", "Rachel will stay."],
            "answer": 1,
            "split": "dev",
        }
    ]
    (s,) = load_annotations(
        "vlep", _write_jsonl(tmp_path / "vlep_dev_release.jsonl", recs, final_newline=False)
    )
    assert s.qid == "VLEP_20142" and s.qtype == "VLEP" and s.question == ""
    assert s.options == ["Rachel will leave.", "Rachel will stay."] and s.answer == 1
    assert (s.start, s.end) == (38.18, 40.95)


def test_sevila_json(tmp_path: Path) -> None:
    recs = [
        {
            "video": "1104/3555755537",
            "num_option": 5,
            "qid": "CW_3555755537_1",
            "a0": "follow woman.",
            "a1": "cleasn environment.",
            "a2": "resting.",
            "a3": "hot indoor.",
            "a4": "sunbathing in beach.",
            "answer": "2",
            "question": "why does the person lie down without wearing her footwear?",
        }
    ]
    path = tmp_path / "val.json"
    path.write_text(json.dumps(recs))
    (s,) = load_annotations("nextqa", path, videos_root="/nextqa")
    assert s.qid == "3555755537_1" and s.extra["sevila_qid"] == "CW_3555755537_1"
    assert s.qtype == "CW" and s.answer == 2 and s.video_id == "3555755537"
    assert s.question == "why does the person lie down without wearing her footwear?"  # kept as stored
    assert s.options[1] == "cleasn environment."
    assert s.video == str(Path("/nextqa") / "1104/3555755537.mp4")

    star = [
        {
            "video": "6H78U",
            "num_option": 4,
            "qid": "Sequence_T3_99",
            "a0": "a",
            "a1": "b",
            "a2": "c",
            "a3": "d",
            "answer": 0,
            "question": "q?",
            "start": "1.5",
            "end": 9,
        }
    ]
    path.write_text(json.dumps(star))
    (t,) = load_annotations("star", path)
    assert t.qid == "Sequence_T3_99" and t.qtype == "Sequence" and (t.start, t.end) == (1.5, 9.0)
    assert t.video == "6H78U"

    vlep = [
        {
            "video": "clip_ep",
            "num_option": 2,
            "qid": "VLEP_5",
            "a0": "x",
            "a1": "y",
            "answer": 1,
            "start": 1,
            "end": 3,
        }
    ]
    path.write_text(json.dumps(vlep))
    (v,) = load_annotations("vlep", path)
    assert v.question == "" and v.qtype == "VLEP" and v.options == ["x", "y"]


# ---------------------------------------------------------------------------------------------------- errors


def test_unknown_dataset_lists_names(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        load_annotations("msrvtt", tmp_path / "x.json")
    msg = str(exc.value)
    assert "msrvtt" in msg and all(name in msg for name in available_datasets()) and "\n" not in msg


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_annotations("tvqa", tmp_path / "nope.jsonl")
    bad = tmp_path / "tvqa_val.jsonl"
    good = {
        "vid_name": "v",
        "ts": "1-2",
        "q": "q",
        "a0": "a",
        "a1": "b",
        "a2": "c",
        "a3": "d",
        "a4": "e",
        "answer_idx": 0,
    }
    bad.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n{broken\n")
    with pytest.raises(InputError) as exc:
        load_annotations("tvqa", bad)
    assert f"{bad}:3" in str(exc.value) and "\n" not in str(exc.value)
    del good["q"]
    _write_jsonl(bad, [good])
    with pytest.raises(InputError, match=r"tvqa_val.jsonl:1: missing field 'q'"):
        load_annotations("tvqa", bad)
    empty = tmp_path / "empty.json"
    empty.write_text("  \n")
    with pytest.raises(InputError, match="empty"):
        load_annotations("star", empty)
    broken_list = tmp_path / "list.json"
    broken_list.write_text('[\n{"video": 1},\n{oops}\n]')
    with pytest.raises(InputError, match=r"list.json:3"):
        load_annotations("star", broken_list)


def test_wrong_format_names_the_likely_dataset(real_data: Path, tmp_path: Path) -> None:
    csv_path = real_data / "nextqa" / "val.csv"
    with pytest.raises(InputError) as exc:
        load_annotations("star", csv_path)
    assert str(exc.value) == (
        f"{csv_path}: not a star annotation file (it looks like a nextqa file); star reads: "
        "official STAR json list (question_id, video_id, choices, answer text); SeViLA JSON list (video, qid, a0.., "
        "answer)"
    )
    qvh = real_data / "qvhighlights" / "example_queries.jsonl"
    with pytest.raises(InputError, match=r"not a tvqa annotation file \(it looks like a qvhighlights file\)"):
        load_annotations("tvqa", qvh)
    odd = _write_jsonl(tmp_path / "odd.jsonl", [{"x": 1}])
    with pytest.raises(
        InputError, match=r"odd.jsonl: not a vlep annotation file; vlep reads: release JSON Lines"
    ):
        load_annotations("vlep", odd)


# ---------------------------------------------------------------------------------------------------- preflight


def _mc(qid: str, video: str) -> Sample:
    return Sample(
        dataset="tvqa",
        qid=qid,
        video_id=Path(video).stem,
        video=video,
        question="q",
        options=["a", "b"],
        answer=0,
        qtype="TVQA",
    )


def test_preflight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "good.mp4"
    good.write_bytes(b"x")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"y")
    samples = [
        _mc("1", str(good)),
        _mc("2", str(tmp_path / "a.mp4")),
        _mc("3", str(good)),
        _mc("4", str(tmp_path / "b.mp4")),
        _mc("5", str(broken)),
        _mc("6", str(tmp_path / "c.mp4")),
        _mc("7", str(tmp_path / "d.mp4")),
    ]
    rep = preflight(samples)
    assert rep.missing == [str(tmp_path / n) for n in ("a.mp4", "b.mp4", "c.mp4", "d.mp4")]
    assert [s.qid for s in rep.ok] == ["1", "3", "5"]
    assert rep.summary() == (
        f"4 of 6 videos missing (first: {tmp_path / 'a.mp4'}, {tmp_path / 'b.mp4'}, {tmp_path / 'c.mp4'})"
    )

    def probe(path: object) -> dict:
        if Path(str(path)).name == "broken.mp4":
            raise VideoError(f"cannot decode {path}")
        return {}

    fake = types.ModuleType("sevila_tools.video")
    fake.probe = probe  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sevila_tools.video", fake)
    rep = preflight(samples, check_readable=True)
    assert rep.unreadable == [str(broken)] and [s.qid for s in rep.ok] == ["1", "3"]
    assert "1 unreadable" in rep.summary() and "\n" not in rep.summary()
    assert preflight([_mc("1", str(good))]).summary() == "0 of 1 videos missing"


# ---------------------------------------------------------------------------------------------------- specs


def test_spec_fields() -> None:
    from sevila_tools.prompts import PROMPT_STYLES

    expected = {
        # name: (num_options, prompt style, task, default frames, headline)
        "nextqa": (5, "default", "multiple_choice", 32, "overall"),
        "star": (4, "default", "multiple_choice", 32, "macro_type_mean"),
        "how2qa": (4, "default", "multiple_choice", 32, "overall"),
        "tvqa": (5, "default", "multiple_choice", 32, "overall"),
        "vlep": (2, "next_event", "multiple_choice", 32, "overall"),
        "qvhighlights": (0, "query_relevance", "moments", 75, "MR-full-mAP"),
    }
    for name, fields in expected.items():
        spec = get_dataset(name)
        assert (spec.num_options, spec.prompt_style, spec.task, spec.default_frames, spec.headline) == fields
        assert spec.prompt_style in PROMPT_STYLES and spec.description and spec.readers
    assert (
        get_dataset(" NExTQA ") is get_dataset("nextqa") and get_dataset(get_dataset("star")).name == "star"
    )
    assert [get_dataset(n).headline_column for n in available_datasets()] == [
        "Acc",
        "Acc",
        "Acc",
        "Avg.",
        "Acc",
        "Acc",
        "MR-full-mAP",
    ]
    assert all(get_dataset(n).headline_column in get_dataset(n).columns for n in available_datasets())


def test_unknown_dataset_is_one_line() -> None:
    with pytest.raises(InputError) as exc:
        get_dataset("kinetics")
    assert str(exc.value) == (
        "unknown dataset 'kinetics'; choose one of: how2qa, needleqa, nextqa, star, tvqa, vlep, qvhighlights"
    )


def test_spec_load_reads_gzip(data_dir: Path, real_data: Path) -> None:
    spec = get_dataset("nextqa")
    packed = spec.load(
        data_dir / "nextqa" / "val.csv.gz",
        videos="/v",
        video_map=data_dir / "nextqa" / "map_vid_vidorID.json.gz",
    )
    plain = load_annotations(
        "nextqa", real_data / "nextqa" / "val.csv", "/v", real_data / "nextqa" / "map_vid_vidorID.json"
    )
    assert [s.model_dump() for s in packed] == [s.model_dump() for s in plain]
    broken = data_dir.parent / "data" / "qvhighlights" / "LICENSE"
    with pytest.raises(InputError, match="not a qvhighlights annotation file"):
        get_dataset("qvhighlights").load(broken)


def test_fixture_files_are_the_published_files(real_data: Path) -> None:
    import hashlib

    published = {
        "nextqa/val.csv": "43198bdef8436b8d64a9b75d846b0987c10cbf94ebf4be325c4a4e54634d66b8",
        "nextqa/map_vid_vidorID.json": "1955d89e7a175346faf8d4a582297ff349619231394f59fd7872f459ac8a8685",
        "qvhighlights/highlight_val_release.jsonl": "f668a1eaea156ec5315e14718999cea043a8cf948d3cafbd8e8d655318c3cd02",
        "qvhighlights/sample_val_preds.jsonl": "df3227ef84985db846f102e75cda43b5f9f962d12b95b990028eed88f1901b40",
        "qvhighlights/sample_val_preds_metrics_raw.json": "ddd5e405c480c6bde6abe2d54561d68ce7098bc7c10a42ed40a9e72e2eda5841",
        "clip/bpe_simple_vocab_16e6.txt.gz": "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a",
        "moment_detr/opt.json": "3e79a1ad943f92bd8ea633c08fe7efa9170e23ba4fe4f1dd92c75e55bf9c141e",
    }
    for rel, digest in published.items():
        assert hashlib.sha256((real_data / rel).read_bytes()).hexdigest() == digest, rel
    for folder in ("nextqa", "qvhighlights", "clip", "moment_detr"):
        assert (real_data / folder / "LICENSE").is_file()


# ---------------------------------------------------------------------------------------------------- empty windows


def test_empty_and_reversed_windows_are_kept_and_counted(tmp_path: Path) -> None:
    base = {"q": "q?", "a0": "a", "a1": "b", "a2": "c", "a3": "d", "answer_idx": 0}
    recs = [
        {**base, "vid_name": "v0", "ts": "10.0-20.0"},
        {**base, "vid_name": "v1", "ts": "15.0-15.0"},  # empty
        {**base, "vid_name": "v2", "ts": "30.5-12.0"},  # reversed
        {**base, "vid_name": "v3"},  # no window: the whole video
    ]
    samples = load_annotations("how2qa", _write_jsonl(tmp_path / "how2qa.jsonl", recs))
    assert [s.qid for s in samples] == ["HOW2QA_0", "HOW2QA_1", "HOW2QA_2", "HOW2QA_3"]
    assert [s.empty_window for s in samples] == [False, True, True, False]
    assert (samples[2].start, samples[2].end) == (30.5, 12.0)
    assert count_empty_windows(samples) == 2

    from sevila_tools.eval.scorers import score_multiple_choice

    metrics = score_multiple_choice("how2qa", {s.qid: 0 for s in samples}, samples)
    assert metrics["n"] == 4 and metrics["overall"] == 100.0  # every question scored


# ---------------------------------------------------------------------------------------------------- VLEP videos


def test_vlep_video_layouts(tmp_path: Path) -> None:
    recs = [
        {
            "example_id": 1,
            "vid_name": "friends_s01e02_seg02_clip_05_ep",
            "ts": [1, 3],
            "events": ["a", "b"],
            "answer": 0,
        },
        {"example_id": 2, "vid_name": "Xy12abc_0:10-0:20", "ts": [0, 5], "events": ["c", "d"], "answer": 1},
    ]
    ann = _write_jsonl(tmp_path / "vlep_dev_release.jsonl", recs)
    root = tmp_path / "videos"
    (root / "youtube").mkdir(parents=True)
    (root / "tv").mkdir()
    tv_clip = root / "tv" / "friends_s01e02_seg02_clip_05.mp4"
    yt_clip = root / "youtube" / "Xy12abc_0:10-0:20.mp4"
    for f in (tv_clip, yt_clip):
        f.write_bytes(b"x")
    spec = get_dataset("vlep")
    official = spec.load(ann, videos=root)
    assert [s.video for s in official] == [str(tv_clip), str(yt_clip)]
    assert preflight(official).missing == []
    named = spec.load(ann, videos={"youtube": root / "youtube", "tv": root / "tv"}, video_ext="mkv")
    assert [s.video for s in named] == [str(tv_clip.with_suffix(".mkv")), str(yt_clip.with_suffix(".mkv"))]
    flat = spec.load(ann, videos=tmp_path / "flat")  # no youtube/ + tv/ folders: the flat rule
    assert [s.video for s in flat] == [str(tmp_path / "flat" / (r["vid_name"] + ".mp4")) for r in recs]
    with pytest.raises(InputError, match="must be named 'youtube' and 'tv'"):
        spec.load(ann, videos={"yt": root})
    how2qa = _write_jsonl(
        tmp_path / "h.jsonl", [{"vid_name": "v", "q": "q", "a0": "", "a1": "", "a2": "", "a3": ""}]
    )
    with pytest.raises(InputError, match="not a layout of this dataset"):
        get_dataset("how2qa").load(how2qa, videos={"youtube": root, "tv": root})


# ---------------------------------------------------------------------------------------------------- extension


def test_a_new_dataset_is_one_registration(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """What a new module in eval/datasets/ does: build a DatasetSpec from a reader and register it."""
    from sevila_tools.eval.datasets import DatasetSpec, Reader, _spec, register_dataset
    from sevila_tools.eval.scorers import score_accuracy

    stack = _spec._REGISTRY.scoped()
    stack.__enter__()
    request.addfinalizer(lambda: stack.__exit__(None, None, None))

    def read(file, spec, paths):
        return [
            Sample(
                dataset=spec.name,
                qid=str(r["id"]),
                video_id=r["clip"],
                video=paths(r["clip"], r["clip"], where),
                question=r["q"],
                options=r["options"],
                answer=r["gold"],
                qtype=None,
            )
            for where, r in file.records
        ]

    spec = register_dataset(
        DatasetSpec(
            name="toyqa",
            description="toy",
            readers=(Reader("toy JSON Lines", ("jsonl",), lambda r: "clip" in r, read),),
            prompt_style="default",
            num_options=3,
            task="multiple_choice",
            scorer=score_accuracy,
            headline="overall",
            columns=("Acc",),
        )
    )
    ann = _write_jsonl(
        tmp_path / "toy.jsonl",
        [{"id": i, "clip": f"c{i}", "q": "q?", "options": ["x", "y", "z"], "gold": i % 3} for i in range(4)],
    )
    samples = load_annotations("toyqa", ann, videos_root="/toy")
    assert "toyqa" in available_datasets() and samples[1].video == str(Path("/toy") / "c1.mp4")
    metrics = spec.score({"0": 0, "1": 1, "2": 0, "3": 0}, samples)
    assert (
        metrics["overall"] == 75.0
        and metrics["per_type"] == {"TOYQA": 75.0}
        and metrics["dataset"] == "toyqa"
    )
    with pytest.raises(ValueError, match="registered twice"):
        register_dataset(DatasetSpec(**{**spec.__dict__, "description": "other"}))
    with pytest.raises(InputError, match="unknown prompt style"):
        register_dataset(DatasetSpec(**{**spec.__dict__, "name": "toy2", "prompt_style": "nope"}))


@pytest.mark.parametrize(
    "first", ["sevila_tools.eval.scorers", "sevila_tools.eval.datasets.vlep", "sevila_tools.cli.commands"]
)
def test_import_order_does_not_matter(first: str) -> None:
    import subprocess

    code = (
        f"import {first}\n"
        "from sevila_tools.eval.datasets import available_datasets\n"
        "from sevila_tools.eval.scorers import score_multiple_choice, score_qvhighlights\n"
        "print(len(available_datasets()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "7", out.stderr
