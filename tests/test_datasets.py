"""Annotation loaders (evaluation.md §1) on the real NExT-QA / QVHighlights files and small hand-made files."""

from __future__ import annotations

import csv
import json
import sys
import types
from collections import Counter
from pathlib import Path

import pytest

from sevila_tools.errors import InputError, VideoError
from sevila_tools.eval.datasets import DATASETS, NUM_OPTIONS, Sample, load_annotations, preflight


@pytest.fixture(scope="module")
def nextqa_val(shared_data: Path) -> list[Sample]:
    d = shared_data / "nextqa"
    return load_annotations(
        "nextqa", d / "val.csv", videos_root="/videos", video_map=d / "map_vid_vidorID.json"
    )


def _write_jsonl(path: Path, records: list[dict], final_newline: bool = True) -> Path:
    text = "\n".join(json.dumps(r) for r in records)
    path.write_text(text + ("\n" if final_newline else ""), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------- NExT-QA


def test_constants() -> None:
    assert DATASETS == ("nextqa", "star", "how2qa", "tvqa", "vlep", "qvhighlights")
    assert NUM_OPTIONS == {"nextqa": 5, "star": 4, "how2qa": 4, "tvqa": 5, "vlep": 2}


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


def test_nextqa_csv_first_row_conversion(nextqa_val: list[Sample], shared_data: Path) -> None:
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
    vmap = json.loads((shared_data / "nextqa" / "map_vid_vidorID.json").read_text())
    assert s.video == str(Path("/videos") / (vmap["4010069381"] + ".mp4"))
    with (shared_data / "nextqa" / "val.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    for t, row in zip(nextqa_val, rows, strict=True):
        # SeViLA appends unconditionally: the one val question already ending in "?" gets "??"
        assert t.question == row["question"] + "?"
        assert t.options == [row[f"a{i}"] + "." for i in range(5)]
        assert t.video == str(Path("/videos") / (vmap[t.video_id] + ".mp4"))
    assert sum(t.question.endswith("??") for t in nextqa_val) == 1


def test_nextqa_csv_without_map_or_root(shared_data: Path) -> None:
    path = shared_data / "nextqa" / "val.csv"
    no_map = load_annotations("nextqa", path, videos_root="/r", video_ext="avi")
    assert no_map[0].video == str(Path("/r") / "4010069381.avi")
    stems = load_annotations("nextqa", path, video_map=shared_data / "nextqa" / "map_vid_vidorID.json")
    assert stems[0].video.endswith("/4010069381") and not stems[0].video.endswith(".mp4")
    # keys are unique and equal f"{video}_{qid}" from an independent csv read
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [f"{r['video']}_{r['qid']}" for r in rows] == [s.qid for s in no_map]


def test_nextqa_map_missing_video(tmp_path: Path, shared_data: Path) -> None:
    with pytest.raises(InputError, match="not in the video map"):
        load_annotations("nextqa", shared_data / "nextqa" / "val.csv", video_map={"1": "0000/1"})


# ---------------------------------------------------------------------------------------------------- QVHighlights


def test_qvhighlights_val(shared_data: Path) -> None:
    path = shared_data / "qvhighlights" / "highlight_val_release.jsonl"
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


def test_qvhighlights_single_record(shared_data: Path) -> None:
    samples = load_annotations("qvhighlights", shared_data / "qvhighlights" / "example_queries.jsonl")
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
    assert "msrvtt" in msg and all(name in msg for name in DATASETS) and "\n" not in msg


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


def test_csv_for_wrong_dataset(shared_data: Path) -> None:
    with pytest.raises(InputError, match="only supported for nextqa"):
        load_annotations("star", shared_data / "nextqa" / "val.csv")


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
