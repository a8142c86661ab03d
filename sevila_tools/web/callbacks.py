"""What the web page runs, without Gradio: the forward chain in stages, selector comparison, session files.

:class:`WebDemo` owns one :class:`~sevila_tools.chain.SevilaChain` (one model, one feature store) and turns
page inputs into typed requests; its generators yield :class:`Stage` / :class:`Comparison` values as each
step ends, which :mod:`sevila_tools.web.app` maps onto Gradio components.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from sevila_tools.agents.toolset import SPECS
from sevila_tools.errors import InputError
from sevila_tools.prompts import LETTERS, MAX_OPTIONS
from sevila_tools.results import localize_result
from sevila_tools.schemas import ForwardRequest, KeyFrame, LocalizeRequest, LocalizeResult
from sevila_tools.selectors import REGISTRY, Selector
from sevila_tools.web.uploads import MIB, pick_video, real_dirs

GalleryItem = tuple[np.ndarray, str]
#: the open-question tool of the one tool list (the answer tab without options, the comparison tab)
ASK = SPECS["ask_video"]
LOCAL_SESSION = "local"


@dataclass
class Stage:
    """One update of the answer tab; ``None`` fields are left as they are on the page."""

    status: str
    timeline: str | None = None  # PNG: the same plot as ``sevila localize --plot``
    gallery: list[GalleryItem] | None = None
    answer: str | None = None
    probs: dict[str, float] | None = None
    json_path: str | None = None
    result: BaseModel | None = None  # the typed result, on the last stage


@dataclass
class SelectorRun:
    """One selector's column in the comparison tab."""

    name: str
    gallery: list[GalleryItem] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # keyframe times (s)
    answer: str = ""
    error: str | None = None
    result: BaseModel | None = None


@dataclass
class Comparison:
    """One update of the comparison tab: finished selectors so far, in the order asked."""

    status: str
    runs: dict[str, SelectorRun] = field(default_factory=dict)


def parse_options(text: str | Sequence[str] | None) -> list[str]:
    """Answer options from one line each (blank lines dropped): 0 (open answer) or 2 to 5."""
    lines = text.splitlines() if isinstance(text, str) else list(text or [])
    options = [line.strip() for line in lines if line and line.strip()]
    if len(options) > MAX_OPTIONS:
        raise InputError(f"at most {MAX_OPTIONS} options (got {len(options)})")
    if len(options) == 1:
        raise InputError("give at least 2 options, or none for an open answer")
    return options


def _window(value: float | None) -> float | None:
    """A window bound from a number field: empty or 0 means "not set" (the whole video on that side)."""
    return float(value) if value else None


def web_selectors() -> list[type[Selector]]:
    """Registered selectors usable without a gold answer or a dataset's question ids, in listing order."""
    usable = (c for c in REGISTRY.values() if not (c.needs_gold or c.needs_question_id))
    return sorted(usable, key=lambda c: (c.rank, c.name))


def caption(kf: KeyFrame) -> str:
    """Gallery caption of a keyframe: time, frame number and score."""
    score = "unscored" if kf.score is None else f"score {kf.score:.3f}"
    return f"{kf.time:.2f} s · frame {kf.frame_index} · {score}"


def answer_label(options: Sequence[str], probs: Sequence[float]) -> dict[str, float]:
    """``{"(A) option": probability}`` for a probability bar per option."""
    return {
        f"({LETTERS[i]}) {text}": float(p) for i, (text, p) in enumerate(zip(options, probs, strict=True))
    }


class WebDemo:
    """The page's logic over one chain.

    Args:
        chain: the loaded :class:`~sevila_tools.chain.SevilaChain` (its store caches encoded videos).
        allow_dirs: folders whose videos may be read by path (none: uploads only).
        max_upload_mb: size limit of uploaded videos.
        work_dir: parent of the per-session folders (plots, JSON); a fresh temporary folder by default.
    """

    def __init__(
        self,
        chain: Any,
        allow_dirs: Sequence[str | Path] | None = None,
        max_upload_mb: float = 300,
        work_dir: str | Path | None = None,
    ) -> None:
        self.chain = chain
        self.allow_dirs = real_dirs(allow_dirs)
        if max_upload_mb <= 0:
            raise InputError("--max-upload-mb must be positive")
        self.max_upload_mb = max_upload_mb
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="sevila_web_"))
        self._lock = threading.Lock()  # one model call at a time, whatever the server's queue does
        self._uploads: dict[str, set[str]] = {}
        self._counter = 0

    # ------------------------------------------------------------------ page facts
    @property
    def runtime(self) -> Any:
        return self.chain.runtime

    @property
    def decoder(self) -> str:
        return self.chain.pipeline.encoder.decoder

    def provenance(self) -> str:
        """Markdown: where the weights come from, and the random-weights notice when it applies."""
        from sevila_tools.results import model_info, notice

        info = model_info(self.runtime)
        text = f"**Model** `{info.model}` · checkpoint `{info.checkpoint or 'none'}` · device `{info.device}`"
        warn = notice(self.runtime)
        return text + (f"\n\n⚠️ **{warn}**" if warn else "")

    # ------------------------------------------------------------------ sessions
    def session_dir(self, session: str | None) -> Path:
        """This session's folder for plots and JSON files (created on demand)."""
        folder = self.work_dir / (session or LOCAL_SESSION)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _new_file(self, session: str | None, stem: str, suffix: str) -> Path:
        with self._lock:
            self._counter += 1
            n = self._counter
        return self.session_dir(session) / f"{stem}-{n}{suffix}"

    def end_session(self, session: str | None) -> None:
        """Delete the session's folder and the files it uploaded."""
        key = session or LOCAL_SESSION
        shutil.rmtree(self.work_dir / key, ignore_errors=True)
        for path in self._uploads.pop(key, set()):
            Path(path).unlink(missing_ok=True)

    def close(self) -> None:
        """Delete every session's files."""
        for key in list(self._uploads):
            self.end_session(key)
        shutil.rmtree(self.work_dir, ignore_errors=True)

    # ------------------------------------------------------------------ requests
    def fields(
        self,
        upload: str | None,
        server_path: str | None,
        question: str,
        options: str | Sequence[str] | None,
        num_frames: float,
        num_keyframes: float,
        start: float | None,
        end: float | None,
        session: str | None = None,
        display_name: str | None = None,
    ) -> dict[str, Any]:
        """Checked request fields (video, question, options, frames, keyframes, window)."""
        opts = parse_options(options)
        if upload:
            self._uploads.setdefault(session or LOCAL_SESSION, set()).add(str(upload))
        video = pick_video(upload, server_path, self.allow_dirs, int(self.max_upload_mb * MIB), display_name)
        return {
            "video": video,
            "question": question or "",
            "options": opts,
            "num_frames": int(num_frames),
            "num_keyframes": int(num_keyframes),
            "start": _window(start),
            "end": _window(end),
        }

    def _gallery(self, video: str, keyframes: Sequence[KeyFrame]) -> list[GalleryItem]:
        from sevila_tools.video import read_frames

        pixels, _ = read_frames(video, [k.frame_index for k in keyframes], decoder=self.decoder, size=None)
        return [(img, caption(k)) for img, k in zip(pixels, keyframes, strict=True)]

    def _timeline(self, loc: LocalizeResult, session: str | None) -> str:
        from sevila_tools.plotting import plot_localization

        return str(plot_localization(loc, self._new_file(session, "timeline", ".png"), decoder=self.decoder))

    def _json(self, result: BaseModel, session: str | None) -> str:
        path = self._new_file(session, "sevila-result", ".json")
        path.write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return str(path)

    # ------------------------------------------------------------------ the answer tab
    def run(self, fields: dict[str, Any], selector: str, session: str | None = None) -> Iterator[Stage]:
        """Encode, localize (yield timeline and keyframes), then answer (yield everything with the JSON).

        With options the result is exactly ``SevilaChain.forward``'s ``ForwardResult``; without options it is
        ``SevilaChain.ask``'s ``AskResult`` (free text)."""
        fields = {**fields, "selector": selector}
        loc_req = LocalizeRequest.model_validate(fields)
        req = (
            ForwardRequest.model_validate(fields) if fields["options"] else ASK.request_model.model_validate(fields)
        )
        with self._lock:
            ev = self.chain.encode(loc_req)
            selection = self.chain.localizer.select(loc_req, ev)
            loc = localize_result(loc_req, ev, selection, self.runtime)
        timeline, gallery = self._timeline(loc, session), self._gallery(loc.video, loc.keyframes)
        yield Stage(status="keyframes ready; answering ...", timeline=timeline, gallery=gallery)
        if isinstance(req, ForwardRequest):
            with self._lock:
                result = self.chain.forward_encoded(req, ev, selection)  # the Localizer runs once
            final_loc, ans = result.localization, result.answer
            answer, probs = (
                f"({ans.answer_letter}) {ans.answer_text}",
                answer_label(ans.options, ans.option_probs),
            )
            final_keys = final_loc.keyframes
        else:
            with self._lock:
                result = ASK.run(lambda: self.chain, req)
            final_loc, answer, probs, final_keys = loc, result.answer_text, {}, result.keyframes
        if [k.frame_index for k in final_keys] != [k.frame_index for k in loc.keyframes]:
            timeline, gallery = self._timeline(final_loc, session), self._gallery(loc.video, final_keys)
        yield Stage(
            status="done",
            timeline=timeline,
            gallery=gallery,
            answer=answer,
            probs=probs,
            json_path=self._json(result, session),
            result=result,
        )

    # ------------------------------------------------------------------ the comparison tab
    def compare(self, fields: dict[str, Any], selectors: Sequence[str]) -> Iterator[Comparison]:
        """Each selector on the same question, the video encoded once per candidate count (normally once)."""
        names = list(dict.fromkeys(selectors))
        if not names:
            raise InputError("choose at least one selector to compare")
        for name in names:
            if name not in REGISTRY or REGISTRY[name].needs_gold:
                raise InputError(f"selector {name!r} cannot be compared here")
        encoded: dict[int, Any] = {}
        out = Comparison(status="")
        for i, name in enumerate(names):
            out.runs[name] = self._compare_one(fields, name, encoded)
            out.status = (
                f"{i + 1}/{len(names)} selectors done; video encoded {len(encoded)}x "
                "(once per candidate count, shared by the selectors)"
            )
            yield out

    def _compare_one(self, fields: dict[str, Any], name: str, encoded: dict[int, Any]) -> SelectorRun:
        from sevila_tools.errors import SevilaError

        run = SelectorRun(name=name)
        try:
            req_fields = {**fields, "selector": name}
            with self._lock:
                n = self.chain.pipeline.selector(name).num_candidates(
                    fields["num_frames"], fields["num_keyframes"]
                )
                if n not in encoded:
                    encoded[n] = self.chain.encode(LocalizeRequest.model_validate(req_fields))
                if fields["options"]:
                    res = self.chain.forward_encoded(ForwardRequest.model_validate(req_fields), encoded[n])
                    keys, ans = res.localization.keyframes, res.answer
                    p = ans.option_probs[ans.answer_index]
                    run.answer = f"({ans.answer_letter}) {ans.answer_text} · p={p:.3f}"
                else:
                    res = ASK.run(lambda: self.chain, ASK.request_model.model_validate(req_fields))
                    keys, run.answer = res.keyframes, res.answer_text
            run.result, run.times = res, [k.time for k in keys]
            run.gallery = self._gallery(fields["video"], keys)
        except SevilaError as exc:
            run.error = str(exc)
        return run
