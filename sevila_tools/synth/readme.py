"""The README written next to a generated NeedleQA set: what was generated, with which seed and options."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sevila_tools.synth.world import COLOURS, EVENTS_PER_VIDEO, KINDS, PLACES, TEMPLATES, event_length_range

if TYPE_CHECKING:
    from sevila_tools.synth.needleqa import NeedleQAConfig


def readme_text(cfg: NeedleQAConfig, counts: dict[str, int]) -> str:
    """Markdown describing one generation (no dates or host names, so it is identical for the same seed)."""
    from sevila_tools.synth.needleqa import MARKER

    lo, hi = event_length_range(cfg.num_frames)
    command = (f"sevila synth needleqa --out DIR --videos {cfg.videos} --seed {cfg.seed} --duration {cfg.duration:g} "
               f"--size {cfg.size} --fps {cfg.fps:g} --splits {cfg.splits}")
    templates = "\n".join(f"- `{name}`: \"{text}?\"" for name, (text, _) in TEMPLATES.items())
    colours = ", ".join(COLOURS)
    return f"""# NeedleQA (synthetic video QA)

{MARKER}

Generated with `{command}`. The same seed and options give identical files (one x264 thread; the same
PyAV/FFmpeg build).

| split | videos = questions | span queries |
|---|---|---|
| train | {counts['train']} | {EVENTS_PER_VIDEO * counts['train']} |
| val | {counts['val']} | {EVENTS_PER_VIDEO * counts['val']} |
| test | {counts['test']} | {EVENTS_PER_VIDEO * counts['test']} |

Every video: {cfg.duration:g} s at {cfg.fps:g} fps ({cfg.num_frames} frames), {cfg.size}, H.264 in mp4. A panned,
blocky background and 2-3 grey shapes drift through the whole video. Three shapes appear one after another
for {lo}-{hi} frames each (at most 10 % of the video; long enough that SeViLA's 32 uniform candidate frames
always include one of them); they differ in shape and place. One of them, the target, is coloured; the question
asks for its colour. The other two are grey distractor events.

Question templates (the event is named by its shape, its place or both; the answer is its colour; the 5
options are always {colours}, in this order):
{templates}

Vocabulary: colours {', '.join(COLOURS)}; shapes {', '.join(KINDS)}; places {', '.join(PLACES)}.

## Files

- `videos/<video>.mp4`
- `annotations/{{train,val,test}}.csv`: NExT-QA columns `video, frame_count, width, height, question, answer,
  qid, type, a0..a4` (questions without `?` and options without `.`, as NExT-QA stores them; the readers add
  them; `type` is NExT-QA's DL for place questions and DO for the others), plus `template` and `event_start,
  event_end`: the target event in seconds (frame index / fps, both ends included).
- `annotations/spans_{{train,val,test}}.jsonl`: QVHighlights release lines, one per event (`qid`, `query` =
  the event's caption, `duration`, `vid`, `relevant_windows`, `relevant_clip_ids` and `saliency_scores` of its
  2-s clips).

## Use

    sevila eval -d needleqa -a DIR/annotations/test.csv --videos DIR/videos --model tiny-trained --out runs/test
    sevila eval -d qvhighlights -a DIR/annotations/spans_test.jsonl --videos DIR/videos --model tiny-trained --out runs/spans
"""
