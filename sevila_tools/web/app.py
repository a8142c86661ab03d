"""The Gradio page of ``sevila web``: inputs, the answer tab, the selector comparison tab, queue and launch.

The callbacks here only adapt :class:`~sevila_tools.web.callbacks.WebDemo` values to components; every error a
user can cause becomes one readable ``error: ...`` status line, and the tab's other outputs are cleared (never a
stack trace, never an error badge on every panel).
"""

import html
import logging
import re
from collections.abc import Iterator
from typing import Any

import gradio as gr
from pydantic import ValidationError

from sevila_tools.errors import SevilaError, error_line
from sevila_tools.schemas import DEFAULT_FRAMES, DEFAULT_KEYFRAMES, LocalizeRequest
from sevila_tools.video import WarmDecoders
from sevila_tools.web.callbacks import Comparison, Stage, WebDemo, web_selectors
from sevila_tools.web.uploads import MIB, VIDEO_EXTENSIONS

log = logging.getLogger("sevila_tools.web")

#: all model events share one worker (one request on the model at a time)
MODEL_QUEUE = "sevila-model"
TITLE = "SeViLA: keyframes and answers"
ANSWER_ARGS = "video video_path question options num_frames num_keyframes selector start end"
COMPARE_ARGS = "video video_path question options num_frames num_keyframes start end"


_MARKDOWN = re.compile(r"([\\`*_\[\]~])")  # what formats text inside a Markdown line (the line starts "error: ")


def page_error(exc: BaseException) -> str:
    """The status line of a failed request, ``error: <one sentence>``, escaped so Markdown shows it literally;
    unexpected errors are logged with their traceback and shown as an internal error."""
    if not isinstance(exc, SevilaError | ValidationError):
        log.error("unexpected error in a web request", exc_info=exc)
        text = f"internal error (details in the server log): {error_line(exc)}"
    else:
        text = error_line(exc)
    return "error: " + html.escape(_MARKDOWN.sub(r"\\\1", text), quote=False)


def _session(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None) if request is not None else None


def _stage_outputs(stage: Stage) -> tuple[Any, ...]:
    """(status, timeline, gallery, answer, probabilities, JSON file); None fields stay as they are."""
    keep = gr.skip()
    return (
        stage.status,
        keep if stage.timeline is None else stage.timeline,
        keep if stage.gallery is None else stage.gallery,
        keep if stage.answer is None else stage.answer,
        keep if stage.probs is None else stage.probs,
        keep if stage.json_path is None else stage.json_path,
    )


def _inputs_block(demo_svc: WebDemo) -> dict[str, gr.components.Component]:
    """The shared inputs by callback argument name (video, question, options, sampling, selector, window)."""
    selectors = web_selectors()
    default = LocalizeRequest.model_fields["selector"].default
    with gr.Row():
        with gr.Column():
            video = gr.File(
                label="Video", file_types=list(VIDEO_EXTENSIONS), type="filepath", elem_id="sevila-video"
            )
            path = gr.Textbox(
                label="...or a video path on the server",
                value="",
                visible=bool(demo_svc.allow_dirs),
                info="under: " + ", ".join(str(d) for d in demo_svc.allow_dirs),
                elem_id="sevila-path",
            )
            question = gr.Textbox(label="Question", elem_id="sevila-question")
            options = gr.Textbox(
                label="Options",
                value="",
                lines=5,
                elem_id="sevila-options",
                info="one per line, 2 to 5; leave empty for an open (free-text) answer",
            )
        with gr.Column():
            frames = gr.Slider(1, 128, value=DEFAULT_FRAMES, step=1, label="Candidate frames")
            keyframes = gr.Slider(1, 16, value=DEFAULT_KEYFRAMES, step=1, label="Keyframes")
            selector = gr.Dropdown(
                choices=[(f"{c.name}: {c.description}", c.name) for c in selectors],
                value=default,
                label="Selector",
                elem_id="sevila-selector",
            )
            with gr.Row():
                start = gr.Number(label="Start (s; 0 = from the beginning)", value=0, minimum=0)
                end = gr.Number(label="End (s; 0 = to the end)", value=0, minimum=0)
    return {
        "video": video,
        "video_path": path,
        "question": question,
        "options": options,
        "num_frames": frames,
        "num_keyframes": keyframes,
        "selector": selector,
        "start": start,
        "end": end,
    }


def _pick(inputs: dict[str, gr.components.Component], names: str) -> list[gr.components.Component]:
    return [inputs[n] for n in names.split()]


def _answer_tab(demo_svc: WebDemo, inputs: dict[str, gr.components.Component]) -> None:
    button = gr.Button("Localize and answer", variant="primary", elem_id="sevila-run")
    status = gr.Markdown(elem_id="sevila-status")
    with gr.Row():
        answer = gr.Textbox(label="Answer", interactive=False, elem_id="sevila-answer")
        probs = gr.Label(label="Option probabilities", num_top_classes=5, elem_id="sevila-probs")
    gallery = gr.Gallery(
        label="Keyframes", columns=4, rows=1, height=320, object_fit="contain", elem_id="sevila-keyframes"
    )
    timeline = gr.Image(label="Score timeline (keyframes in red)", type="filepath", elem_id="sevila-timeline")
    result_json = gr.File(label="Download JSON (the full typed result)", elem_id="sevila-json")

    def answer_fn(
        video: str | None,
        video_path: str | None,
        question: str,
        options: str,
        num_frames: float,
        num_keyframes: float,
        selector: str,
        start: float | None,
        end: float | None,
        request: gr.Request,
    ) -> Iterator[tuple[Any, ...]]:
        session = _session(request)
        yield ("encoding the video ...", None, [], "", None, None)
        try:
            fields = demo_svc.fields(
                video, video_path, question, options, num_frames, num_keyframes, start, end, session
            )
            for stage in demo_svc.run(fields, selector, session):
                yield _stage_outputs(stage)
        except Exception as exc:  # noqa: BLE001 - every error becomes the status line; the rest is cleared
            yield (page_error(exc), None, [], "", None, None)

    button.click(
        answer_fn,
        inputs=_pick(inputs, ANSWER_ARGS),
        outputs=[status, timeline, gallery, answer, probs, result_json],
        api_name="answer",
        concurrency_limit=1,
        concurrency_id=MODEL_QUEUE,
    )


def _compare_tab(demo_svc: WebDemo, inputs: dict[str, gr.components.Component]) -> None:
    selectors = web_selectors()
    default = LocalizeRequest.model_fields["selector"].default
    choose = gr.CheckboxGroup(
        choices=[c.name for c in selectors],
        value=list(dict.fromkeys([selectors[0].name, default])),
        label="Selectors to compare (the video is encoded once and reused)",
        elem_id="sevila-compare-choice",
    )
    button = gr.Button("Compare selectors", variant="primary", elem_id="sevila-compare")
    status = gr.Markdown(elem_id="sevila-compare-status")
    rows, cells = [], []
    for cls in selectors:
        with gr.Row(visible=False, elem_id=f"sevila-compare-{cls.name}") as row:
            with gr.Column(scale=1):
                gr.Markdown(f"**{cls.name}**: {cls.description}")
                answer = gr.Markdown()
            gallery = gr.Gallery(show_label=False, columns=8, rows=1, height=170, scale=4)
        rows.append(row)
        cells += [answer, gallery]

    def updates(cmp: Comparison) -> list[Any]:
        out: list[Any] = [cmp.status] + [gr.update(visible=c.name in cmp.runs) for c in selectors]
        for cls in selectors:
            run = cmp.runs.get(cls.name)
            if run is None:
                out += [gr.skip(), gr.skip()]
            else:
                times = ", ".join(f"{t:.2f}" for t in run.times)
                text = f"{html.escape(run.answer)}\n\nkeyframes at {times} s"
                if run.error:
                    text = f"⚠️ {html.escape(run.error)}"
                out += [text, run.gallery]
        return out

    def compare_fn(
        video: str | None,
        video_path: str | None,
        question: str,
        options: str,
        num_frames: float,
        num_keyframes: float,
        start: float | None,
        end: float | None,
        chosen: list[str],
        request: gr.Request,
    ) -> Iterator[list[Any]]:
        yield updates(Comparison(status="encoding the video ..."))
        try:
            fields = demo_svc.fields(
                video, video_path, question, options, num_frames, num_keyframes, start, end, _session(request)
            )
            for cmp in demo_svc.compare(fields, chosen):
                yield updates(cmp)
        except Exception as exc:  # noqa: BLE001 - the status line says it; every selector row is hidden
            yield updates(Comparison(status=page_error(exc)))

    button.click(
        compare_fn,
        inputs=[*_pick(inputs, COMPARE_ARGS), choose],
        outputs=[status, *rows, *cells],
        api_name="compare",
        concurrency_limit=1,
        concurrency_id=MODEL_QUEUE,
    )


def build_app(demo_svc: WebDemo) -> gr.Blocks:
    """The page: provenance (and the random-weights notice) on top, shared inputs, two tabs."""
    with gr.Blocks(title=TITLE, delete_cache=(1800, 3600), analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}")
        gr.Markdown(demo_svc.provenance(), elem_id="sevila-provenance")
        inputs = _inputs_block(demo_svc)
        with gr.Tabs():
            with gr.Tab("Answer"):
                _answer_tab(demo_svc, inputs)
            with gr.Tab("Compare selectors"):
                _compare_tab(demo_svc, inputs)

        def end_session(request: gr.Request) -> None:
            demo_svc.end_session(_session(request))

        demo.unload(end_session)
    demo.queue(default_concurrency_limit=1)
    return demo


def launch(demo_svc: WebDemo, host: str = "127.0.0.1", port: int = 7860, share: bool = False) -> None:
    """Serve the page until interrupted; every session's files are deleted on the way out."""
    demo = build_app(demo_svc)
    decoders = WarmDecoders()  # decode workers kept warm while the page is served
    try:
        demo.launch(
            server_name=host,
            server_port=port,
            share=share,
            max_file_size=int(demo_svc.max_upload_mb * MIB),
            allowed_paths=[str(demo_svc.work_dir)],
            show_error=False,
            ssr_mode=False,
            inbrowser=False,
        )
    finally:
        decoders.close()
        demo_svc.close()
