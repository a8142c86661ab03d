"""One thread-safe tool service (one lazily loaded model, one worker thread, allowed roots) shared by the
LangChain tools and the MCP server; the tools are defined once here from the request/result models."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import tempfile
import threading
import uuid
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sevila_tools.errors import InputError, SevilaError
from sevila_tools.prompts import LETTERS
from sevila_tools.schemas import (
    DEFAULT_SELECTOR,
    AnswerRequest,
    AnswerResult,
    AskRequest,
    AskResult,
    ForwardRequest,
    ForwardResult,
    KeyFrame,
    LocalizeRequest,
    LocalizeResult,
    MomentsRequest,
    MomentsResult,
    PseudoLabelRequest,
    PseudoLabelResult,
)
from sevila_tools.video import WarmDecoders

log = logging.getLogger("sevila_tools.agents")

DEFAULT_MODEL = "Salesforce/blip2-flan-t5-xl"
#: Per-frame rows are sent to the model only up to this many candidate frames (else keyframes only).
SMALL_FRAME_LIST = 16
#: Longest side of keyframe thumbnails (pixels).
THUMBNAIL_SIZE = 320


# ------------------------------------------------------------------------------------------------ extra models
class VideoQuestionRequest(ForwardRequest):
    """Multiple-choice question: the forward chain (selector -> Answerer), or the Answerer at given times."""

    timestamps: list[float] | None = Field(
        default=None, max_length=64,
        description=(
            "Optional: read exactly the frames shown at these times (seconds, e.g. keyframe times from "
            "localize_keyframes) instead of localizing; selector, num_frames, num_keyframes, start and end are "
            "then not used. Null or empty: run the selector."
        ),
    )


class VideoAnswerResult(ForwardResult):
    """Answer plus the localization it came from (``localization`` is null when ``timestamps`` were given)."""

    localization: LocalizeResult | None = Field(  # type: ignore[assignment]
        default=None, description="Keyframe selection (null when the frames were given by timestamps)."
    )


class ListSelectorsRequest(BaseModel):
    """No arguments."""

    model_config = ConfigDict(extra="forbid")


class SelectorInfo(BaseModel):
    """One keyframe selector."""

    name: str
    description: str
    needs_gold: bool = Field(default=False, description="Needs the correct `answer` (evaluation only).")


class SelectorList(BaseModel):
    """The keyframe selectors accepted by the ``selector`` argument."""

    selectors: list[SelectorInfo]
    default: str = DEFAULT_SELECTOR


# ------------------------------------------------------------------------------------------------ errors
def describe_error(exc: BaseException) -> str:
    """One readable line for a tool error (what the agent or MCP client sees)."""
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
            msg = str(err.get("msg", "")).removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
        return "invalid arguments: " + "; ".join(parts)
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, SevilaError):
        text = f"{type(exc).__name__}: {text}"
    return text[:500]


# ------------------------------------------------------------------------------------------------ tool specs
def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


def _keyframes(kfs: list[KeyFrame]) -> list[dict[str, Any]]:
    return [{"time": _r(k.time), "frame_index": k.frame_index, "score": _r(k.score, 4)} for k in kfs]


def _with_notice(d: dict[str, Any], notice: str | None) -> dict[str, Any]:
    if notice:
        d["notice"] = notice
    return d


def summarize_localize(res: LocalizeResult) -> dict[str, Any]:
    """What the model reads from localize_keyframes: keyframe times and scores (all frames only when few)."""
    out: dict[str, Any] = {"video": res.video, "selector": res.selector, "num_frames": res.num_frames,
                           "keyframes": _keyframes(res.keyframes)}
    if len(res.frames) <= SMALL_FRAME_LIST and any(f.score is not None for f in res.frames):
        out["frames"] = [{"time": _r(f.time), "score": _r(f.score, 4)} for f in res.frames]
    return _with_notice(out, res.notice)


def _answer_part(ans: AnswerResult) -> dict[str, Any]:
    return {
        "answer": ans.answer_letter, "answer_index": ans.answer_index, "answer_text": ans.answer_text,
        "option_probs": {LETTERS[i]: _r(p, 4) for i, p in enumerate(ans.option_probs)},
    }


def summarize_answer(res: VideoAnswerResult) -> dict[str, Any]:
    """Answer letter/index/text, option probabilities, and the frames read (times in seconds)."""
    out = _answer_part(res.answer)
    if res.localization is not None:
        out["selector"] = res.localization.selector
        out["keyframes"] = _keyframes(res.localization.keyframes)
    else:
        out["frame_times"] = [_r(t) for t in res.answer.frame_times]
    return _with_notice(out, res.answer.notice)


def summarize_ask(res: AskResult) -> dict[str, Any]:
    """Free-text answer and the keyframes it was read from."""
    return _with_notice({"answer_text": res.answer_text, "keyframes": _keyframes(res.keyframes)}, res.notice)


def summarize_pseudo_label(res: PseudoLabelResult) -> dict[str, Any]:
    """Per-frame yes/no labels (time, label, predicted option) and the positive rate."""
    labels = [{"time": _r(lab.time), "label": lab.label, "predicted": LETTERS[lab.predicted]} for lab in res.labels]
    out: dict[str, Any] = {"answer": res.answer, "positive_rate": _r(res.positive_rate, 4)}
    if len(labels) <= 4 * SMALL_FRAME_LIST:
        out["labels"] = labels
    else:
        out["yes_times"] = [x["time"] for x in labels if x["label"] == "yes"]
    return _with_notice(out, res.notice)


def summarize_moments(res: MomentsResult) -> dict[str, Any]:
    """What the model reads from find_moments: the ranked windows (seconds) and the rule behind them."""
    out = {"video": res.video, "query": res.query, "duration": _r(res.duration),
           "windows": [{"start": _r(w[0]), "end": _r(w[1]), "score": _r(w[2], 4)} for w in res.pred_relevant_windows],
           "note": res.span_rule}
    return _with_notice(out, res.notice)


def summarize_selectors(res: SelectorList) -> dict[str, Any]:
    return res.model_dump(mode="json")


@dataclass(frozen=True)
class ToolSpec:
    """One tool: name, model-facing description, request/result models, runner and compact summary."""

    name: str
    description: str
    request_model: type[BaseModel]
    result_model: type[BaseModel]
    method: str  # ToolService method run on the worker thread
    summarize: Callable[[Any], dict[str, Any]]
    needs_video: bool = True

    def keyframes(self, result: BaseModel) -> list[KeyFrame]:
        """Keyframes of a result (for thumbnails)."""
        if isinstance(result, LocalizeResult):
            return list(result.keyframes)
        if isinstance(result, VideoAnswerResult):
            if result.localization is not None:
                return list(result.localization.keyframes)
            return [KeyFrame(frame_index=i, time=t) for i, t in zip(result.answer.frame_indices,
                                                                    result.answer.frame_times, strict=True)]
        if isinstance(result, AskResult):
            return list(result.keyframes)
        return []


_VIDEO_NOTE = (
    " `video` is a path to a video file on this machine (relative paths are resolved against the first allowed "
    "directory). Times are in seconds."
)

TOOL_SPECS: tuple[ToolSpec, ...] = (
    ToolSpec(
        name="list_selectors",
        description=(
            "List the keyframe selectors accepted by the `selector` argument of localize_keyframes, "
            "answer_video_question and ask_video, with what each one does. The default, 'localizer' (SeViLA's "
            "learned localizer), is usually best; call this only to pick another one (e.g. 'uniform')."
        ),
        request_model=ListSelectorsRequest, result_model=SelectorList, method="list_selectors",
        summarize=summarize_selectors, needs_video=False,
    ),
    ToolSpec(
        name="localize_keyframes",
        description=(
            "Find WHEN in a video the moments relevant to a question happen, without answering it. Samples "
            "`num_frames` candidate frames evenly (optionally only between `start` and `end`), scores each one "
            "with the `selector` and returns the top `num_keyframes` keyframes in time order, each with its time "
            "and score. Use it to locate events, or to pick `timestamps` for answer_video_question."
            + _VIDEO_NOTE
        ),
        request_model=LocalizeRequest, result_model=LocalizeResult, method="localize",
        summarize=summarize_localize,
    ),
    ToolSpec(
        name="answer_video_question",
        description=(
            "Answer a MULTIPLE-CHOICE question about a video: give the `question` and 2 to 5 `options` (plain "
            "answer texts, no letters). By default it runs the full SeViLA chain: the `selector` picks the "
            "`num_keyframes` most relevant of `num_frames` candidate frames and the answerer reads them together. "
            "With `timestamps` it reads exactly the frames at those times instead. Returns the chosen option "
            "(letter A-E, 0-based index, text), every option's probability and the frame times used. For "
            "questions without candidate answers use ask_video." + _VIDEO_NOTE
        ),
        request_model=VideoQuestionRequest, result_model=VideoAnswerResult, method="answer",
        summarize=summarize_answer,
    ),
    ToolSpec(
        name="ask_video",
        description=(
            "Answer an OPEN-ENDED question about a video in free text (no options): selects keyframes like "
            "localize_keyframes, then the answerer writes a short answer (a few words) from them. Returns the "
            "text and the keyframe times. When you can list candidate answers, answer_video_question is more "
            "reliable." + _VIDEO_NOTE
        ),
        request_model=AskRequest, result_model=AskResult, method="ask", summarize=summarize_ask,
    ),
    ToolSpec(
        name="find_moments",
        description=(
            "Find WHERE in a video a described moment happens (moment retrieval): scores `num_frames` frames for "
            "the `query` text and returns ranked time windows [start, end, score] plus a saliency score per 2 s. "
            "Use it for 'when does X happen' without answer options." + _VIDEO_NOTE
        ),
        request_model=MomentsRequest, result_model=MomentsResult, method="moments", summarize=summarize_moments,
    ),
    ToolSpec(
        name="pseudo_label_frames",
        description=(
            "For a multiple-choice question whose correct option is KNOWN (`answer` = its 0-based index), label "
            "each of `num_frames` sampled frames 'yes' if the answerer picks the correct option from that frame "
            "alone, else 'no'. Shows which moments support the answer (SeViLA's reverse chain, used to train the "
            "localizer); it does not answer questions." + _VIDEO_NOTE
        ),
        request_model=PseudoLabelRequest, result_model=PseudoLabelResult, method="pseudo_label",
        summarize=summarize_pseudo_label,
    ),
)

SPECS: dict[str, ToolSpec] = {s.name: s for s in TOOL_SPECS}


# ------------------------------------------------------------------------------------------------ service
class ToolService:
    """The SeViLA tools over one lazily loaded runtime, one worker thread and a path allow-list.

    Args:
        runtime: an already loaded runtime to share (else ``model``/``checkpoint``/``device`` are loaded on first
            use, once).
        model, checkpoint, device, trust_checkpoint: as for :func:`sevila_tools.loading.load_runtime`.
        decoder: video reader (``auto``, ``decord``, ``pyav``).
        prompts: prompt style (:func:`sevila_tools.prompts.get_prompt_style`; None: the multiple-choice default).
        allow_dirs: video paths must resolve (symlinks followed) under one of these folders; ``None`` allows any
            path (library use). Relative video paths are resolved against the first folder (else the working
            directory).
        output_dir: where keyframe thumbnails go (default: a fresh temporary folder).
        cache_items: frame/feature sets kept in memory (repeat questions on a video skip decoding and the ViT).
    """

    def __init__(
        self,
        runtime: Any = None,
        *,
        model: str = DEFAULT_MODEL,
        checkpoint: str = "auto",
        device: str = "auto",
        trust_checkpoint: bool = False,
        decoder: str = "auto",
        prompts: str | None = None,
        allow_dirs: Sequence[str | os.PathLike[str]] | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        cache_items: int = 16,
    ) -> None:
        self.model = model
        self.checkpoint = checkpoint
        self.device = device
        self.trust_checkpoint = trust_checkpoint
        self.decoder = decoder
        self.prompts = prompts
        self._owns_output_dir = output_dir is None
        self.cache_items = cache_items
        self.allow_dirs: list[Path] | None = None
        if allow_dirs is not None:
            self.allow_dirs = [Path(os.path.realpath(Path(d).expanduser())) for d in allow_dirs]
            for d in self.allow_dirs:
                if not d.is_dir():
                    raise InputError(f"allowed directory does not exist or is not a folder: {d}")
        self._output_dir = Path(output_dir) if output_dir is not None else None
        self._runtime = runtime
        self._chain: Any = None
        self.loads = 0  # how many times a runtime was loaded (at most 1)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sevila-model")
        self._dir_lock = threading.Lock()
        self._decoders = WarmDecoders()  # decode workers kept warm: a new video pays no process start-up

    # -------------------------------------------------------------------------------------------- runtime
    def _ensure_chain(self) -> Any:
        """Runs on the worker thread only: load the runtime (once) and build the chain (once)."""
        if self._chain is None:
            from sevila_tools.chain import SevilaChain
            from sevila_tools.encoding import MemoryStore

            if self._runtime is None:
                from sevila_tools.loading import load_runtime

                log.info("loading %s (checkpoint %s) ...", self.model, self.checkpoint)
                self._runtime = load_runtime(
                    self.model, self.checkpoint, device=self.device, trust_checkpoint=self.trust_checkpoint
                )
                self.loads += 1
                if self._runtime.random_weights:
                    log.warning("random weights (%s): outputs are meaningless", self.model)
                log.info("model ready on %s", self._runtime.device)
            self._chain = SevilaChain(
                self._runtime, decoder=self.decoder, store=MemoryStore(self.cache_items), prompts=self.prompts
            )
        return self._chain

    def load(self) -> Any:
        """Load the runtime now (blocking; idempotent) and return it."""
        self._executor.submit(self._ensure_chain).result()
        return self._runtime

    def warm_up(self) -> Future[Any]:
        """Start loading the runtime in the background (the first tool call waits for it; a failure is logged
        and retried, with its message, by each call)."""
        fut = self._executor.submit(self._ensure_chain)

        def report(f: Future[Any]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.error("model loading failed: %s", describe_error(f.exception()))  # type: ignore[arg-type]

        fut.add_done_callback(report)
        return fut

    @property
    def runtime(self) -> Any:
        """The shared runtime (loaded on first access)."""
        return self._runtime if self._runtime is not None else self.load()

    def close(self, wait: bool = True, cancel_pending: bool = False) -> None:
        """Stop the worker thread (after the queued calls, unless ``cancel_pending``) and delete the thumbnail
        folder when the service created it."""
        self._executor.shutdown(wait=wait, cancel_futures=cancel_pending)
        self._decoders.close()
        with self._dir_lock:
            if self._owns_output_dir and self._output_dir is not None:
                shutil.rmtree(self._output_dir, ignore_errors=True)
                self._output_dir = None

    # -------------------------------------------------------------------------------------------- paths
    @property
    def output_dir(self) -> Path:
        """Folder for keyframe thumbnails (created on first use)."""
        with self._dir_lock:
            if self._output_dir is None:
                self._output_dir = Path(tempfile.mkdtemp(prefix="sevila_agent_"))
                # the tool set may never be closed explicitly: remove the thumbnails when it is collected or exits
                weakref.finalize(self, shutil.rmtree, str(self._output_dir), True)
            self._output_dir.mkdir(parents=True, exist_ok=True)
            return self._output_dir

    def resolve_video(self, video: str) -> str:
        """The real path of ``video``, refused unless it lies under an allowed directory (symlinks resolved)."""
        if not isinstance(video, str) or not video.strip():
            raise InputError("video path is empty")
        p = Path(video).expanduser()
        if not p.is_absolute():
            base = self.allow_dirs[0] if self.allow_dirs else Path.cwd()
            p = base / p
        real = Path(os.path.realpath(p))
        if self.allow_dirs is not None and not any(real.is_relative_to(d) for d in self.allow_dirs):
            roots = ", ".join(str(d) for d in self.allow_dirs)
            raise InputError(f"video path is outside the allowed directories ({roots}): {video}")
        from sevila_tools.video import check_video_path

        check_video_path(real)  # VideoError: missing, a directory, not a regular file, empty
        return str(real)

    # -------------------------------------------------------------------------------------------- requests
    def prepare(self, name: str, args: BaseModel | dict[str, Any] | None) -> BaseModel:
        """Validate ``args`` against tool ``name``'s request model and resolve/check the video path."""
        spec = self.spec(name)
        raw = args.model_dump() if isinstance(args, BaseModel) else dict(args or {})
        req = spec.request_model.model_validate(raw)
        if spec.needs_video:
            req = req.model_copy(update={"video": self.resolve_video(req.video)})  # type: ignore[attr-defined]
        return req

    @staticmethod
    def spec(name: str) -> ToolSpec:
        if name not in SPECS:
            raise InputError(f"unknown tool {name!r}; tools: {', '.join(SPECS)}")
        return SPECS[name]

    def submit(self, name: str, args: BaseModel | dict[str, Any] | None) -> Future[BaseModel]:
        """Validate now, queue the model work on the worker thread; the future holds the result model."""
        req = self.prepare(name, args)
        method = getattr(self, "_run_" + self.spec(name).method)
        return self._executor.submit(method, req)

    def call(self, name: str, args: BaseModel | dict[str, Any] | None = None) -> BaseModel:
        """Run tool ``name`` (blocking; safe from any thread)."""
        return self.submit(name, args).result()

    async def acall(self, name: str, args: BaseModel | dict[str, Any] | None = None) -> BaseModel:
        """Run tool ``name`` without blocking the event loop (the model work stays on the worker thread)."""
        fut = self.submit(name, args)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # another async library (trio): wait in a thread
            import anyio.to_thread

            return await anyio.to_thread.run_sync(fut.result, abandon_on_cancel=True)
        return await asyncio.wrap_future(fut)

    # -------------------------------------------------------------------------------------------- work (worker)
    def _run_list_selectors(self, req: ListSelectorsRequest) -> SelectorList:
        from sevila_tools.selectors import REGISTRY

        classes = sorted(REGISTRY.values(), key=lambda c: (c.rank, c.name))
        return SelectorList(selectors=[
            SelectorInfo(name=c.name, description=c.description, needs_gold=c.needs_gold) for c in classes
        ])

    def _run_localize(self, req: LocalizeRequest) -> LocalizeResult:
        return self._ensure_chain().localizer(req)

    def _run_answer(self, req: VideoQuestionRequest) -> VideoAnswerResult:
        chain = self._ensure_chain()
        if req.timestamps:
            fields = {"video", "question", "options", "timestamps", "decoding", "answerer"}
            answer = chain.answerer(AnswerRequest.model_validate(req.model_dump(include=fields)))
            return VideoAnswerResult(localization=None, answer=answer)
        fwd = chain.forward(ForwardRequest.model_validate(req.model_dump(exclude={"timestamps"})))
        return VideoAnswerResult(localization=fwd.localization, answer=fwd.answer)

    def _run_moments(self, req: MomentsRequest) -> MomentsResult:
        from sevila_tools.eval.predict import find_moments

        chain = self._ensure_chain()
        return find_moments(chain.runtime, req, chain.pipeline.encoder)

    def _run_ask(self, req: AskRequest) -> AskResult:
        return self._ensure_chain().ask(req)

    def _run_pseudo_label(self, req: PseudoLabelRequest) -> PseudoLabelResult:
        return self._ensure_chain().pseudo_labeller(req)

    # -------------------------------------------------------------------------------------------- thumbnails
    def thumbnails(self, name: str, result: BaseModel, size: int = THUMBNAIL_SIZE) -> list[str]:
        """Write the keyframes of ``result`` as JPEG files (native aspect, longest side ``size``); their paths.

        Decoding happens in the calling thread (not on the model worker). Failures are logged, never raised.
        """
        kfs = self.spec(name).keyframes(result)
        video = getattr(result, "video", None)
        if video is None and isinstance(result, VideoAnswerResult):
            video = result.answer.video
        if not kfs or not video:
            return []
        try:
            from PIL import Image

            from sevila_tools.video import read_frames

            frames, _ = read_frames(video, [k.frame_index for k in kfs], decoder=self.decoder, size=None)
            stem = f"{Path(video).stem[:40]}-{uuid.uuid4().hex[:8]}"
            paths = []
            for k, frame in zip(kfs, frames, strict=True):
                img = Image.fromarray(frame)
                img.thumbnail((size, size))
                path = self.output_dir / f"{stem}-t{k.time:08.3f}-f{k.frame_index}.jpg"
                img.save(path, format="JPEG", quality=85)
                paths.append(str(path))
            return paths
        except Exception as exc:  # noqa: BLE001 - thumbnails are a convenience
            log.warning("could not write keyframe thumbnails for %s: %s", video, describe_error(exc))
            return []


def summary_json(name: str, result: BaseModel) -> str:
    """The compact JSON text the model reads for a result of tool ``name``."""
    return json.dumps(SPECS[name].summarize(result), ensure_ascii=False)
