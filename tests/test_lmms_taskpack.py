"""The lmms-eval plugin's parts that need no lmms-eval: arguments, a document's question, the task pack's
documents and scoring, and the keyframe clips (run in the main environment)."""

from __future__ import annotations

import csv

import av
import pytest
import yaml

from sevila_tools.lmms_eval import MODELS, task_dir
from sevila_tools.lmms_eval.clips import clip_times, write_clip
from sevila_tools.lmms_eval.common import PluginError, doc_question, parse_inner_args
from sevila_tools.lmms_eval.taskpack import (
    TASK_DATASETS,
    doc_to_text,
    load_docs,
    parse_letter,
    process_results,
)
from sevila_tools.synthetic import decode_counter, make_video


@pytest.mark.parametrize("value", ["pretrained=/m;device=cpu;max_num_frames=8",
                                   "'pretrained=/m,device=cpu,max_num_frames=8'",
                                   '{"pretrained": "/m", "device": "cpu", "max_num_frames": 8}'])
def test_inner_args_forms(value):
    assert parse_inner_args(value) == {"pretrained": "/m", "device": "cpu", "max_num_frames": 8}


def test_bad_inner_args_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as err:
        parse_inner_args("pretrained")
    assert err.value.code == 2
    assert capsys.readouterr().err == "error: inner_args needs key=value pairs separated by ';', got 'pretrained'\n"


def test_doc_question_reads_our_fields_nextqa_fields_or_the_prompt():
    ours = doc_question({"question_id": "v_1", "question": "why?", "options": ["a", "b"], "dataset": "star",
                         "start": 1, "end": 2.5}, "ignored")
    assert (ours.question_id, ours.question, ours.options, ours.dataset, ours.start, ours.end) == (
        "v_1", "why?", ["a", "b"], "star", 1.0, 2.5)
    nextqa = doc_question({"qid": 7, "question": "how", "a0": "x", "a1": "y", "a2": "z"}, "")
    assert (nextqa.question_id, nextqa.options) == ("7", ["x", "y", "z"])
    prompt = doc_question({}, "What happens next?\nA. he sits.\n(B) she runs.\nAnswer with the letter.")
    assert (prompt.question, prompt.options) == ("What happens next?", ["he sits.", "she runs."])


def test_every_dataset_has_a_task_yaml_reading_its_docs():
    assert sorted(MODELS) == ["sevila", "sevila_keyframes"]
    for name in TASK_DATASETS:
        text = (task_dir() / f"sevila_{name}.yaml").read_text()
        cfg = yaml.safe_load("\n".join(x for x in text.splitlines() if "!function" not in x))
        assert cfg["task"] == f"sevila_{name}" and cfg["dataset_path"] == "json"
        assert f"process_docs: !function utils.{name}_docs" in text
        assert (task_dir() / cfg["dataset_kwargs"]["data_files"]["test"]).is_file()
    assert "nextqa_docs = docs_for(\"nextqa\")" in (task_dir() / "utils.py").read_text()


def test_docs_come_from_the_annotation_file_in_order(tmp_path, monkeypatch):
    make_video(tmp_path / "v" / "a1.mp4", num_frames=10, fps=10, width=64, height=48)
    ann = tmp_path / "val.csv"
    with open(ann, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "frame_count", "width", "height", "question", "answer", "qid", "type",
                    "a0", "a1", "a2", "a3", "a4"])
        w.writerow(["a1", 10, 64, 48, "what moves", 3, 4, "CW", "a", "b", "c", "d", "e"])
    with pytest.raises(SystemExit):
        load_docs("nextqa")
    monkeypatch.setenv("SEVILA_NEXTQA_ANNOTATIONS", str(ann))
    monkeypatch.setenv("SEVILA_NEXTQA_VIDEOS", str(tmp_path / "v"))
    (doc,) = load_docs("nextqa")
    assert doc == {"question_id": "a1_4", "dataset": "nextqa", "video": "a1", "video_path": str(tmp_path / "v" / "a1.mp4"),
                   "question": "what moves?", "options": ["a.", "b.", "c.", "d.", "e."], "answer": 3,
                   "answer_letter": "D", "qtype": "CW", "start": None, "end": None}
    assert doc_to_text(doc, {"pre_prompt": "", "post_prompt": "\nLetter:"}) == (
        "what moves?\nA. a.\nB. b.\nC. c.\nD. d.\nE. e.\nLetter:")
    assert process_results(doc, ["(D) d."]) == {"exact_match": 1.0}
    assert process_results(doc, ["B"]) == {"exact_match": 0.0}
    monkeypatch.setenv("SEVILA_NEXTQA_VIDEOS", str(tmp_path / "nowhere"))
    with pytest.raises(PluginError, match="1 of 1 videos missing"):
        load_docs("nextqa")


@pytest.mark.parametrize(("response", "letter"), [("C", "C"), ("C. up", "C"), (" (B) ", "B"), ("it goes up", "C"),
                                                  ("Z", None), ("left or right", None)])
def test_parse_letter(response, letter):
    assert parse_letter(response, ["left", "right", "up"]) == letter


def test_clip_holds_exactly_the_frames_at_their_original_times(tmp_path):
    src = make_video(tmp_path / "src.mp4", num_frames=90, fps=30, width=96, height=64)
    clip = write_clip(str(src), [5, 40, 40, 88], 30.0, tmp_path / "clip.mp4")
    with av.open(str(clip)) as c:
        assert c.streams.video[0].frames == 4
        assert [decode_counter(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)] == [5, 40, 40, 88]
    assert clip_times(clip) == pytest.approx([5 / 30, 40 / 30, 40 / 30 + 1 / 480, 88 / 30], abs=1e-9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "src.mp4"]  # no temporary file left
