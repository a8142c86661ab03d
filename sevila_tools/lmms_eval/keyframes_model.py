"""lmms-eval model ``sevila_keyframes``: any lmms-eval model, shown only SeViLA's keyframes.

``--model sevila_keyframes --model_args inner=NAME,inner_args=k=v;k=v,selector=localizer,k=8`` runs the selector
on each request's video (``frames`` candidates, SeViLA's ``model``/``checkpoint``), or reads ``frames_file=PATH``
(a ``frames.jsonl``), then hands the inner model a clip of exactly those frames, each at its original time
(:func:`~sevila_tools.lmms_eval.clips.write_clip`). ``save_frames=PATH`` writes what it handed over as
``frames.jsonl``; ``clip_dir=DIR`` keeps the clips (a temporary folder otherwise).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms

from sevila_tools.schemas import DEFAULT_FRAMES, DEFAULT_MODEL, DEFAULT_SELECTOR

from .clips import write_clip
from .common import PluginError, as_bool, doc_question, doc_video, parse_inner_args


def _inner_model(name: str, args: dict[str, Any], batch_size: int) -> lmms:
    """Build the inner model by its lmms-eval name (its simple implementation: it reads a video path)."""
    from lmms_eval.models import get_model

    try:
        cls = get_model(name, force_simple=True)
    except ValueError:
        raise PluginError(f"lmms-eval knows no model {name!r} (inner={name}); `python -m lmms_eval models` "
                          "lists the built-in ones") from None
    if not getattr(cls, "is_simple", True):
        raise PluginError(f"model {name!r} has only a chat implementation; sevila_keyframes wraps simple models")
    return cls(**{"batch_size": batch_size, **args})


class SevilaKeyframes(lmms):
    """Wraps an inner lmms-eval model: its requests keep their text and see only the selected frames."""

    is_simple = True

    def __init__(self, inner: str = "", inner_args: Any = None, selector: str = DEFAULT_SELECTOR, k: int = 8,
                 frames: int = DEFAULT_FRAMES, model: str = DEFAULT_MODEL, checkpoint: str = "auto",
                 frames_file: str | None = None, selector_options: Any = None, device: str = "auto",
                 decoder: str = "auto", trust_checkpoint: Any = False, save_frames: str | None = None,
                 clip_dir: str | None = None, id_field: str = "question_id", batch_size: Any = 1,
                 **kwargs: Any) -> None:
        super().__init__()
        unknown = sorted(k2 for k2, v in kwargs.items() if v is not None and k2 not in ("max_batch_size",))
        if unknown:
            raise PluginError(f"sevila_keyframes has no argument {', '.join(unknown)}")
        if not inner:
            raise PluginError("sevila_keyframes needs inner=NAME (the lmms-eval model that answers)")
        self.inner = _inner_model(str(inner), parse_inner_args(inner_args), int(batch_size))
        self.task_dict = self.inner.task_dict  # lmms-eval fills this dict in place; the inner model reads it
        self.k, self.decoder, self.id_field = int(k), str(decoder), str(id_field)
        self.frames_file = self._read_frames(frames_file) if frames_file else None
        self.engine = None
        if self.frames_file is None:
            from .engine import SevilaEngine

            self.engine = SevilaEngine(
                model=str(model), checkpoint=str(checkpoint), device=str(device), decoder=self.decoder,
                trust_checkpoint=as_bool(trust_checkpoint), frames=int(frames), keyframes=self.k,
                selector=str(selector), selector_options=parse_inner_args(selector_options),
            )
        self.clip_dir = Path(clip_dir) if clip_dir else Path(tempfile.mkdtemp(prefix="sevila_keyframes_"))
        self.save_frames = Path(save_frames) if save_frames else None
        self.handed: list[Any] = []  # the FrameRecord of every request, in order

    @staticmethod
    def _read_frames(path: str) -> Any:
        from sevila_tools.errors import InputError
        from sevila_tools.frames import read_frames_file

        try:
            return read_frames_file(path)
        except InputError as exc:
            raise PluginError(str(exc)) from None

    @property
    def rank(self) -> int:
        return self.inner.rank

    @property
    def world_size(self) -> int:
        return self.inner.world_size

    def _check_file_covers(self, docs: list[tuple[dict[str, Any], str]]) -> None:
        """Before any frame is handed over: every question is in the frames file, with ``k`` frames."""
        from sevila_tools.errors import InputError

        ids = [doc_question(doc, ctx, self.id_field).question_id for doc, ctx in docs]
        if any(q is None for q in ids):
            raise PluginError(f"frames_file needs a question id in every document (field {self.id_field!r})")
        try:
            self.frames_file.check_covers(ids)  # type: ignore[union-attr]
        except InputError as exc:
            raise PluginError(str(exc)) from None
        wrong = [q for q in ids if self.frames_file.records[q].k != self.k]  # type: ignore[union-attr]
        if wrong:
            raise PluginError(f"{self.frames_file.path} holds {self.frames_file.records[wrong[0]].k} frames "  # type: ignore[union-attr]
                              f"for question {wrong[0]}, not k={self.k}")

    def _record(self, doc: dict[str, Any], context: str, video: str, task: str) -> Any:
        """The frames of one request, as a frames record (from the file, or selected now)."""
        from sevila_tools.frames import FrameRecord
        from sevila_tools.selectors.file import resolve_frames
        from sevila_tools.video import probe

        q = doc_question(doc, context, self.id_field)
        if self.frames_file is not None:
            rec = self.frames_file.records[str(q.question_id)]
            info = probe(video, decoder=self.decoder)  # type: ignore[arg-type]
            frames, _ = resolve_frames(rec, info.fps, info.num_frames)
            return rec.model_copy(update={"native_indices": frames, "timestamps_s": [i / info.fps for i in frames],
                                          "fps": info.fps, "num_frames": info.num_frames, "video_path": video})
        assert self.engine is not None
        sel, ev = self.engine.select(video, q, doc.get("answer") if isinstance(doc.get("answer"), int) else None)
        return FrameRecord(
            dataset=str(q.dataset or task), question_id=str(q.question_id or doc_id_key(doc, task)),
            video=Path(video).stem, video_path=video, question=q.question, start_s=q.start, end_s=q.end,
            selector=sel.selector, k=self.k, timestamps_s=list(sel.times), native_indices=list(sel.frame_indices),
            scores=None if all(s is None for s in sel.scores) else sel.scores, fps=ev.frames.fps,
            num_frames=ev.frames.num_video_frames,
        )

    def _handed(self, requests: list[Instance]) -> list[Instance]:
        """Each request with its video replaced by the clip of its frames."""
        docs = [(self.task_dict[r.args[4]][r.args[5]][r.args[3]], r.args[0]) for r in requests]
        if self.frames_file is not None:
            self._check_file_covers(docs)
        out = []
        for req, (doc, context) in zip(requests, docs, strict=True):
            _, gen_kwargs, doc_to_visual, doc_id, task, split = req.args[:6]
            video = doc_video(doc_to_visual(doc))
            rec = self._record(doc, context, video, task)
            clip = write_clip(video, rec.native_indices, rec.fps, self.clip_dir / f"{task}_{split}_{doc_id}.mp4",
                              decoder=self.decoder)
            self.handed.append(rec)
            args = (context, gen_kwargs, lambda _doc, path=str(clip): [path], doc_id, task, split, *req.args[6:])
            out.append(dataclasses.replace(req, arguments=args))
        if self.save_frames is not None:
            from sevila_tools.frames import write_frames_file

            write_frames_file(self.save_frames, self.handed)
        return out

    def generate_until(self, requests: list[Instance]) -> list[Any]:
        return self.inner.generate_until(self._handed(requests))

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        return self.inner.loglikelihood(self._handed(requests))

    def generate_until_multi_round(self, requests: list[Instance]) -> list[Any]:
        return self.inner.generate_until_multi_round(self._handed(requests))


def doc_id_key(doc: dict[str, Any], task: str) -> str:
    """A question id for a document that carries none (its task and a hash of its fields)."""
    import hashlib
    import json

    return f"{task}:{hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:12]}"
