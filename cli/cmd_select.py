"""``sevila select``, generated from :class:`~sevila_tools.eval.select.SelectConfig` (``docs/frames.md``)."""

from __future__ import annotations

from typing import Any

from sevila_tools.cli.common import console, err_console, show_notice
from sevila_tools.cli.generate import command


def _render(s: Any) -> None:
    show_notice(s.notice)
    console.print(f"{s.frames_file}: {s.records} questions with frames, {s.errors} errors ({s.resumed} resumed, "
                  f"{s.processed} selected now in {s.elapsed_s:.1f} s)", highlight=False)
    for err in s.first_errors:
        err_console.print(f"error record: {err['qid']}: {err['error']}", highlight=False)


@command("select", models=("sevila_tools.eval.select:SelectConfig",), config_file=True, quiet=True,
         selector_block=True, exclude=frozenset({"decoding"}))
def select_cmd(args: Any) -> None:
    """Keyframes of every question of a dataset into RUN/frames.jsonl, for any Video-LLM (resumable, like eval)."""
    from sevila_tools.eval.select import run_select
    from sevila_tools.schemas import DEFAULT_SELECTOR

    cfg = args.config(selector_options=args.selector_options([args.raw.get("selector", DEFAULT_SELECTOR)]))
    summary = run_select(cfg, progress=args.progress, console=err_console, on_status=args.say)
    if summary.is_main_process:
        args.emit(summary, _render)
