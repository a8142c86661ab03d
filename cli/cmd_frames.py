"""``sevila convert-frames``, generated from :class:`~sevila_tools.eval.convert_frames.ConvertFramesConfig`."""

from __future__ import annotations

from typing import Any

from sevila_tools.cli.common import console
from sevila_tools.cli.generate import config_command


def _render(s: Any) -> None:
    console.print(f"{s.records} questions -> {', '.join(s.outputs)}", highlight=False)
    for note in s.notes:
        console.print(f"note: {note}", highlight=False)


config_command("convert-frames", "sevila_tools.eval.convert_frames:ConvertFramesConfig",
               "sevila_tools.eval.convert_frames:run_convert_frames",
               "Convert SeViLA's frames.jsonl to or from BOLT, AKS, TSPO and VideoITG frame files.", _render)
