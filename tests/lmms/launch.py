"""``python launch.py RECORD ARGS...`` runs ``python -m lmms_eval ARGS...`` with lmms-eval's own video reader
recording what it returns: for every read, the clip, the frame numbers its pixels carry (the synthetic videos'
counter band) and the clip's frame times. Built-in models that read videos with it (``gemma3``) thereby report
exactly which frames reached them."""

from __future__ import annotations

import json
import runpy
import sys


def main() -> None:
    record, args = sys.argv[1], sys.argv[2:]
    import lmms_eval.models.model_utils.load_video as load_video

    from sevila_tools.lmms_eval.clips import clip_times
    from sevila_tools.synthetic import decode_counter

    original = load_video.read_video

    def read_video(video_path, **kwargs):  # noqa: ANN001, ANN003, ANN202 - lmms-eval's signature
        frames = original(video_path, **kwargs)
        entry = {"path": str(video_path), "num_frm": kwargs.get("num_frm"),
                 "counters": [decode_counter(f) for f in frames], "times": clip_times(video_path)}
        with open(record, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        return frames

    load_video.read_video = load_video.read_video_pyav = read_video  # before any model module imports it
    sys.argv = ["lmms_eval", *args]
    runpy.run_module("lmms_eval", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
