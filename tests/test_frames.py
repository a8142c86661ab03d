"""The frame-index file and its converters, as claims on exact files (no model, no video)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from sevila_tools.errors import InputError
from sevila_tools.frames import (
    SCHEMA_FILE,
    Candidates,
    FrameRecord,
    Question,
    fill_with_fps,
    from_aks,
    from_bolt,
    from_tspo,
    from_videoitg,
    json_schema,
    read_frames_file,
    shipped_schema,
    sniff_format,
    to_aks,
    to_bolt,
    to_tspo,
    to_videoitg,
    write_frames_file,
)

ORDER = [Question("v1_0", "v1", "what is it?", {"options": ["a", "b"], "answer": 1, "qtype": "CW"}),
         Question("v2_3", "v2", "where?", {"options": ["c", "d"], "answer": 0, "qtype": "TN"})]


def _rec(qid: str = "v1_0", video: str = "v1", **kw) -> FrameRecord:
    base = dict(dataset="nextqa", question_id=qid, video=video, video_path=f"/data/1025/{video}.mp4",
                question="what is it?", selector="localizer", k=3, timestamps_s=[0.1, 1.0, 2.5],
                native_indices=[3, 30, 75], scores=[0.2, 0.9, 0.5], fps=30.0, num_frames=90,
                candidates=Candidates(native_indices=[3, 30, 45, 75], timestamps_s=[0.1, 1.0, 1.5, 2.5],
                                      scores=[0.2, 0.9, 0.1, 0.5]))
    return FrameRecord(**{**base, **kw})


RECS = [_rec(), _rec("v2_3", "v2", question="where?", native_indices=[0, 12, 13], timestamps_s=[0.0, 0.4, 0.4333],
                     scores=[0.3, 0.1, 0.7], candidates=None)]


def test_shipped_schema_is_the_models_schema_and_valid():
    assert shipped_schema() == json_schema()
    jsonschema.Draft202012Validator.check_schema(shipped_schema())
    assert SCHEMA_FILE.name == "frames.schema.json"


def test_schema_accepts_written_records_and_rejects_broken_ones(tmp_path):
    path = tmp_path / "frames.jsonl"
    write_frames_file(path, RECS)
    validator = jsonschema.Draft202012Validator(shipped_schema())
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [list(validator.iter_errors(x)) for x in lines] == [[], []]
    no_frames = {k: v for k, v in lines[0].items() if k not in ("timestamps_s", "native_indices")}
    assert list(validator.iter_errors(no_frames))
    assert list(validator.iter_errors({**lines[0], "unknown": 1}))
    assert list(validator.iter_errors({k: v for k, v in lines[0].items() if k != "format"}))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"native_indices": [3, 30]}, "native_indices holds 2 values, k is 3"),
        ({"timestamps_s": [1.0, 0.1, 2.5]}, "timestamps_s must be non-negative and in temporal order"),
        ({"native_indices": [3, 30, 95]}, "native index 95 is past the video's 90 frames"),
        ({"timestamps_s": None, "native_indices": None}, "needs timestamps_s or native_indices"),
    ],
)
def test_bad_record_is_one_line_naming_file_and_line(tmp_path, change, message):
    good = RECS[0].model_dump(mode="json", exclude_none=True)
    bad = {**good, **{k: v for k, v in change.items() if v is not None}}
    for key in [k for k, v in change.items() if v is None]:
        bad.pop(key)
    path = tmp_path / "frames.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(InputError) as err:
        read_frames_file(path)
    assert str(err.value).startswith(f"{path}:2: not a sevila-frames/1 record (")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_later_record_wins_and_frames_beat_errors(tmp_path):
    path = tmp_path / "frames.jsonl"
    err = {"format": "sevila-frames/1", "dataset": "nextqa", "question_id": "v1_0", "video": "v1", "error": "x"}
    path.write_text(json.dumps(err) + "\n" + json.dumps(RECS[0].model_dump(mode="json")) + "\n"
                    + json.dumps({**err, "question_id": "v9_9"}) + "\n")
    f = read_frames_file(path)
    assert list(f.records) == ["v1_0"] and list(f.errors) == ["v9_9"]
    with pytest.raises(InputError, match=r"has no frames for 2 of 3 questions \(1 of them are error records\) "
                                         r"\(first: v9_9, v2_3\)"):
        f.check_covers(["v1_0", "v9_9", "v2_3"])
    with pytest.raises(InputError, match=rf"{path} holds frames for nextqa, not star$"):
        f.check_dataset("star")


def test_another_projects_file_is_named_with_the_command_that_converts_it(tmp_path):
    bolt = tmp_path / "bolt.json"
    bolt.write_text(json.dumps(to_bolt(RECS)))
    with pytest.raises(InputError, match=r"it looks like a bolt file; convert it first: "
                                         rf"sevila convert-frames {bolt} --from bolt"):
        read_frames_file(bolt)


def test_to_bolt_is_boltsformat_keyed_by_file_stem():
    assert to_bolt(RECS) == {
        "v1": [{"question_id": "v1_0", "question": "what is it?", "frames": [0.1, 1.0, 2.5]}],
        "v2": [{"question_id": "v2_3", "question": "where?", "frames": [0.0, 0.4, 0.4333]}],
    }


def test_bolt_round_trip_keeps_every_time_and_id():
    back = from_bolt(json.loads(json.dumps(to_bolt(RECS))), "nextqa", "b.json")
    assert [(r.question_id, r.video, r.question, r.timestamps_s, r.k) for r in back] == [
        (r.question_id, r.video, r.question, r.timestamps_s, r.k) for r in RECS]
    assert back[0].native_indices is None and back[0].provenance.source_format == "bolt"
    # BOLT's own rule turns times into frames: round(t * fps)
    assert fill_with_fps(back[0], 30.0).native_indices == [3, 30, 75]


def test_aks_lists_follow_annotation_order_with_candidates():
    files = to_aks(list(reversed(RECS)), ORDER)
    assert files == {"selected_frames.json": [[3, 30, 75], [0, 12, 13]]}  # v2 has no candidates: no outscores
    with_cands = to_aks([RECS[0], _rec("v2_3", "v2")], ORDER)
    assert with_cands["scores.json"] == [[0.2, 0.9, 0.1, 0.5]] * 2
    assert with_cands["frames.json"] == [[3, 30, 45, 75]] * 2
    back = from_aks(with_cands["selected_frames.json"], ORDER, "nextqa", "s.json",
                    with_cands["scores.json"], with_cands["frames.json"])
    assert [(r.question_id, r.native_indices) for r in back] == [("v1_0", [3, 30, 75]), ("v2_3", [3, 30, 75])]
    assert back[1].candidates.scores == [0.2, 0.9, 0.1, 0.5]


def test_aks_needs_every_question_and_the_same_count():
    with pytest.raises(InputError, match=r"1 of 2 questions of the annotation file have no frames \(first: v2_3\); "
                                         "AKS files are positional"):
        to_aks([RECS[0]], ORDER)
    with pytest.raises(InputError, match=r"s.json holds 3 questions but the annotation file has 2 \(AKS skips"):
        from_aks([[1], [2], [3]], ORDER, "nextqa", "s.json")


def test_tspo_rows_carry_the_question_fields_and_frame_idx():
    rows = to_tspo(RECS, {q.question_id: q.fields for q in ORDER})
    assert rows[0] == {"question_id": "v1_0", "video": "v1", "question": "what is it?", "options": ["a", "b"],
                       "answer": 1, "qtype": "CW", "frame_idx": [3, 30, 75]}
    floats = [{**r, "frame_idx": [float(x) for x in reversed(r["frame_idx"])]} for r in rows]
    back = from_tspo(floats, "nextqa", "t.json")
    assert [r.native_indices for r in back] == [[3, 30, 75], [0, 12, 13]]
    with pytest.raises(InputError, match=r"t.json: a TSPO record has no question id field \(question_id or qid "
                                         r"or id\); its keys: video, frame_idx"):
        from_tspo([{"video": "v", "frame_idx": [1]}], "nextqa", "t.json")


def test_videoitg_ranks_by_score_and_reads_back_the_top_k():
    rows = to_videoitg(RECS, ORDER)
    assert rows[0] == {"doc_id": 0, "index": [30, 75, 3], "logits": [0.9, 0.5, 0.2], "num_frames": 1,
                       "contexts": "what is it?", "video_path": "/data/1025/v1.mp4"}
    assert rows[1]["index"] == [13, 0, 12]
    back = from_videoitg(rows, ORDER, "nextqa", "r.jsonl")
    assert [r.native_indices for r in back] == [[3, 30, 75], [0, 12, 13]]
    assert back[0].scores == [0.2, 0.9, 0.5]
    top2 = from_videoitg(rows, ORDER, "nextqa", "r.jsonl", keyframes=2)
    assert [r.native_indices for r in top2] == [[30, 75], [0, 13]] and top2[0].candidates.native_indices == [30, 75, 3]
    with pytest.raises(InputError, match="doc_id 5 is outside the annotation file's 2 questions"):
        from_videoitg([{"doc_id": 5, "index": [1]}], ORDER, "nextqa", "r.jsonl")


def test_fps_fills_times_from_frame_numbers_exactly():
    rec = from_tspo([{"question_id": "q", "video": "v", "frame_idx": [0, 15, 45]}], "star", "t.json")[0]
    filled = fill_with_fps(rec, 30.0)
    assert filled.timestamps_s == [0.0, 0.5, 1.5] and filled.fps == 30.0
    assert fill_with_fps(rec, None) is rec


@pytest.mark.parametrize("fmt", ["bolt", "aks", "tspo", "videoitg", "sevila"])
def test_sniff_recognises_each_format(tmp_path, fmt):
    path = tmp_path / "f.json"
    data = {"bolt": to_bolt(RECS), "aks": to_aks(RECS, ORDER)["selected_frames.json"], "tspo": to_tspo(RECS)}
    if fmt in data:
        path.write_text(json.dumps(data[fmt]))
    elif fmt == "videoitg":
        path.write_text("".join(json.dumps(r) + "\n" for r in to_videoitg(RECS, ORDER)))
    else:
        write_frames_file(path, RECS)
    assert sniff_format(path) == fmt
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "0.json").write_text(json.dumps(to_videoitg(RECS, ORDER)[0]))
    assert sniff_format(folder) == "videoitg"
    assert sniff_format(Path(__file__)) is None
