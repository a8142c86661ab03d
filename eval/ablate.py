"""Keyframe-selection ablations (``sevila ablate``): selectors x frames->keyframes x answerer, one table.

:func:`run_ablation` runs the forward chain for every setting through the dataset runner
(:func:`sevila_tools.eval.runner.run_eval`, one call per setting) and writes a results table shaped like
the paper's Tables 3, 6 and 7: one row per setting (selector, frames -> keyframes, answerer), one column
per metric of the dataset's breakdown (NExT-QA ``Why How Bef&Aft When Cnt Loc Other Acc_C Acc_T Acc_D Acc``;
STAR per type + ``Avg.`` (macro, the headline) + pooled accuracy; How2QA/TVQA/VLEP ``Acc``).

Outputs in ``out`` (a folder)::

    preds/<setting>.jsonl          per-setting predictions (the runner's JSON Lines records)
    preds/<setting>.summary.json   the runner's summary (full config, cache counters) + ablation record
    results.md / .csv / .json      the table (every row carries its full config in the JSON)
    results.png                    bar chart of the headline accuracy per setting

Sharing across settings:

* **ViT features**: every setting uses the same on-disk feature cache folder
  (:class:`~sevila_tools.cache.DiskFeatureCache`, keyed by video content + sampling + ViT weights), so each
  (video, number of frames) is decoded and run through the ViT once for the whole ablation; settings with
  the same frame count hit the cache. ``cache=False`` turns this off (each setting decodes again).
* **CLIP / Moment-DETR**: one CLIP model (shared by the ``clip``, ``scene`` and ``moment_detr`` selectors
  when they use the same CLIP), one Moment-DETR model and **one** ``feature_cache`` dict are passed to every
  setting's selector, so CLIP frame embeddings are computed once per (video, candidate frames) and
  Moment-DETR's 2-s clip features once per video. ``tiny-random`` runtimes get a tiny random CLIP and
  Moment-DETR (offline) unless ``clip_model`` / ``mdetr_checkpoint`` are given.

Rules (decided here, recorded in ``results.json``):

* Default selectors: every registered selector in the order ``uniform, random, clip, scene, moment_detr,
  localizer, oracle`` (then any other registered ones), **except** ``oracle`` when the selected questions
  lack gold answers, and ``moment_detr`` when there is no ``mdetr_checkpoint`` and the model is not
  ``tiny-random``. Skipped defaults are listed in ``notes``. Asking explicitly for ``oracle`` without gold
  answers, or for ``moment_detr`` without a checkpoint (real model), is an error before any model loads.
* ``uniform`` reads k frames by the midpoint rule with ``n = k`` (``selectors.md`` §2): the grid's frame
  count is not used, so grid entries with the same k collapse into one ``uniform`` row (``k -> k``), and
  the table says so.
* ``moment_detr`` runs with ``long_video="sliding"`` unless told otherwise (the library default is
  ``refuse``); the rule and the number of videos longer than 75 clips (150 s) are recorded.
* A grid entry with more keyframes than frames is an error up front.
* Resume (``resume=True``): a setting whose prediction file already covers every runnable question (and has
  its summary) is not run again - no model is loaded when every setting is finished; an unfinished setting
  is continued by the runner's own ``--resume``. A finished setting written with other settings (model,
  checkpoint, decoding, selector options) is an error.

Single process only (the runner's multi-process mode is not used by ``ablate``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sevila_tools.errors import InputError, VideoError

from .datasets import Sample, check_dataset, load_annotations, preflight
from .runner import DEFAULT_MODEL, EvalConfig, EvalSummary, is_error, read_records, run_eval

log = logging.getLogger("sevila_tools.eval.ablate")

DEFAULT_GRID = "8:1,16:1,16:4,32:4,32:8,64:8"
SELECTOR_ORDER = ("uniform", "random", "clip", "scene", "moment_detr", "localizer", "oracle")
ANSWERERS = ("concat", "voting")
MDETR_STRATEGIES = ("top_window_uniform", "topk_saliency")
LONG_VIDEO_RULES = ("refuse", "stride", "sliding")
NEXTQA_COLUMNS = ("Why", "How", "Bef&Aft", "When", "Cnt", "Loc", "Other", "Acc_C", "Acc_T", "Acc_D", "Acc")
STAR_COLUMNS = ("Interaction", "Sequence", "Prediction", "Feasibility", "Avg.", "Acc (pooled)")
TINY_MODEL = "tiny-random"
MAX_FRAMES = 256
MAX_KEYFRAMES = 64

UNIFORM_NOTE = (
    "uniform reads k frames by the midpoint rule with n = k (selectors.md §2): the grid's frame count is "
    "not used, so grid entries with the same k share one row (shown as k→k)"
)
ORACLE_NOTE = (
    "oracle is an upper bound (paper Table 9): a question counts as correct when any single candidate "
    "frame alone gives the gold answer; it reads the gold answers"
)


# ================================================================================ parsing


def parse_grid(grid: str | Iterable[Any]) -> list[tuple[int, int]]:
    """``"8:1,16:4"`` (or ``[(8, 1), "16:4"]``) -> ``[(8, 1), (16, 4)]`` (frames, keyframes).

    Duplicates are dropped (first occurrence kept).

    Raises:
        InputError: (one line) malformed entry, non-positive or too large numbers, or keyframes > frames.
    """
    items: list[Any]
    if isinstance(grid, str):
        items = [p.strip() for p in grid.split(",")]
    else:
        items = list(grid)
    if not items or all(isinstance(p, str) and not p for p in items):
        raise InputError("empty --grid; expected FRAMES:KEYFRAMES[,...], e.g. 32:4,16:4")
    out: list[tuple[int, int]] = []
    for item in items:
        if isinstance(item, str):
            text = item.strip()
            parts = text.split(":")
            if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
                raise InputError(
                    f"bad --grid entry {text!r}: expected FRAMES:KEYFRAMES with positive integers, e.g. 32:4"
                )
            n, k = int(parts[0]), int(parts[1])
        else:
            try:
                n, k = (int(x) for x in item)
            except (TypeError, ValueError):
                raise InputError(f"bad grid entry {item!r}: expected (frames, keyframes)") from None
        if n < 1 or k < 1:
            raise InputError(f"bad --grid entry {n}:{k}: frames and keyframes must be >= 1")
        if n > MAX_FRAMES or k > MAX_KEYFRAMES:
            raise InputError(
                f"bad --grid entry {n}:{k}: at most {MAX_FRAMES} frames and {MAX_KEYFRAMES} keyframes"
            )
        if k > n:
            raise InputError(f"bad --grid entry {n}:{k}: keyframes ({k}) exceed frames ({n})")
        if (n, k) not in out:
            out.append((n, k))
    return out


def parse_names(value: str | Iterable[str] | None) -> list[str] | None:
    """``"a,b"`` / ``["a", "b,c"]`` -> ``["a", "b", "c"]`` (stripped, duplicates dropped); ``None`` stays."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else [p for v in value for p in str(v).split(",")]
    names = [p.strip() for p in parts if p.strip()]
    return list(dict.fromkeys(names))


# ================================================================================ config / result models


class AblationConfig(BaseModel):
    """Everything that defines one ablation (recorded in ``results.json``).

    ``selectors=None`` means the default list (module docstring). ``grid`` accepts a string
    (``"8:1,16:4"``) or pairs. ``answerers`` accepts ``"concat,voting"`` or a list. ``cache_dir=None`` is the
    runner's default feature cache folder.
    """

    model_config = ConfigDict(extra="forbid")

    dataset: str
    annotations: Path
    out: Path
    videos: Path | None = None
    video_map: Path | None = None
    video_ext: str = ".mp4"
    selectors: list[str] | None = None
    grid: list[tuple[int, int]] = Field(default_factory=lambda: parse_grid(DEFAULT_GRID))
    answerers: list[Literal["concat", "voting"]] = Field(default_factory=lambda: ["concat"])
    decoding: Literal["faithful", "teacher_forced"] = "faithful"
    limit: int | None = Field(default=None, ge=1)
    resume: bool = False
    overwrite: bool = False
    retry_errors: bool = False
    skip_missing: bool = False
    model: str = DEFAULT_MODEL
    checkpoint: str = "auto"
    device: str = "auto"
    decoder: str = "auto"
    trust_checkpoint: bool = False
    batch_size: int = Field(default=8, ge=1, le=1024)
    cache: bool = True
    cache_dir: Path | None = None
    prefetch: int = Field(default=2, ge=0, le=64)
    seed: int = 0
    clip_model: str | None = None
    mdetr_checkpoint: str | None = None
    mdetr_strategy: Literal["top_window_uniform", "topk_saliency"] = "top_window_uniform"
    long_video: Literal["refuse", "stride", "sliding"] = "sliding"

    @field_validator("grid", mode="before")
    @classmethod
    def _grid(cls, value: Any) -> Any:
        return parse_grid(value)

    @field_validator("selectors", mode="before")
    @classmethod
    def _selectors(cls, value: Any) -> Any:
        names = parse_names(value)
        if names is not None and not names:
            raise ValueError("no selector given")
        return names

    @field_validator("answerers", mode="before")
    @classmethod
    def _answerers(cls, value: Any) -> Any:
        names = parse_names(value)
        if not names:
            raise ValueError("no answerer given (concat, voting)")
        return names

    @model_validator(mode="after")
    def _check(self) -> AblationConfig:
        self.dataset = check_dataset(self.dataset)
        if self.dataset == "qvhighlights":
            raise ValueError(
                "ablate compares keyframe selectors on multiple-choice datasets, not qvhighlights"
            )
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite exclude each other")
        return self


class AblationRow(BaseModel):
    """One setting of the ablation and its scores."""

    setting: str = Field(description="Setting id (also the prediction file stem).")
    selector: str
    frames: int = Field(description="Candidate frames (uniform: = keyframes, the n = k rule).")
    keyframes: int
    answerer: str
    grid_entries: list[str] = Field(description="Grid entries (FRAMES:KEYFRAMES) that map to this row.")
    status: Literal["run", "resumed"] = Field(description="run = computed (at least partly) by this call.")
    display: dict[str, float | None] = Field(default_factory=dict, description="The table's metric columns.")
    headline: float | None = Field(None, description="Acc (STAR: Avg., the macro type mean).")
    n: int = Field(0, description="Scored questions.")
    n_total: int = Field(0, description="Selected questions.")
    predictions: int = 0
    errors: int = 0
    metrics: dict[str, Any] | None = Field(None, description="score_multiple_choice on the prediction file.")
    note: str | None = None
    predictions_file: str
    summary_file: str
    elapsed_s: float | None = Field(None, description="Wall time of the run that last touched this setting.")
    config: dict[str, Any] = Field(default_factory=dict, description="Full config of the setting.")


class AblationResult(BaseModel):
    """Outcome of :func:`run_ablation` (``sevila ablate --json`` prints it)."""

    dataset: str
    out: str
    files: dict[str, str] = Field(default_factory=dict)
    columns: list[str] = Field(default_factory=list, description="Metric columns of the table.")
    headline_metric: str = "Acc"
    rows: list[AblationRow] = Field(default_factory=list)
    selectors: list[str] = Field(default_factory=list)
    skipped_selectors: dict[str, str] = Field(default_factory=dict)
    grid: list[str] = Field(default_factory=list)
    answerers: list[str] = Field(default_factory=list)
    questions: int = 0
    runnable: int = 0
    settings_run: int = 0
    settings_resumed: int = 0
    vit_cache: dict[str, Any] = Field(default_factory=dict)
    clip_feature_cache: dict[str, Any] = Field(default_factory=dict)
    moment_detr_long_video: dict[str, Any] | None = None
    notes: list[str] = Field(default_factory=list)
    random_weights: bool | None = None
    notice: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    elapsed_s: float = 0.0


# ================================================================================ settings


@dataclass
class Setting:
    """One (selector, frames, keyframes, answerer) combination."""

    selector: str
    frames: int
    keyframes: int
    answerer: str
    grid_entries: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        """File-name-safe id, e.g. ``clip_16to4_concat``."""
        return f"{self.selector}_{self.frames}to{self.keyframes}_{self.answerer}"

    @property
    def label(self) -> str:
        return f"{self.selector} {self.frames}→{self.keyframes} {self.answerer}"


def plan_settings(
    selectors: Sequence[str], grid: Sequence[tuple[int, int]], answerers: Sequence[str]
) -> list[Setting]:
    """Rows in table order: selector, then grid entry, then answerer; ``uniform`` entries with the same k
    collapse into one ``k -> k`` setting."""
    out: dict[tuple, Setting] = {}
    for sel in selectors:
        for n, k in grid:
            for ans in answerers:
                frames = k if sel == "uniform" else n
                key = (sel, frames, k, ans)
                if key not in out:
                    out[key] = Setting(sel, frames, k, ans)
                out[key].grid_entries.append(f"{n}:{k}")
    return list(out.values())


def default_selectors(has_gold: bool, moment_detr_ok: bool) -> tuple[list[str], dict[str, str]]:
    """The default selector list and the reasons for the registered selectors it leaves out."""
    from sevila_tools.selectors import available_selectors

    registered = available_selectors()
    ordered = [s for s in SELECTOR_ORDER if s in registered] + [
        s for s in registered if s not in SELECTOR_ORDER
    ]
    skipped: dict[str, str] = {}
    if not has_gold and "oracle" in ordered:
        skipped["oracle"] = "needs gold answers (the annotations have none)"
    if not moment_detr_ok and "moment_detr" in ordered:
        skipped["moment_detr"] = "no --mdetr-checkpoint (only tiny-random runs it without one)"
    return [s for s in ordered if s not in skipped], skipped


# ================================================================================ shared selector models


class CountingDict(dict):
    """A dict that counts reads (``hits``) and stores (``stores``): the shared CLIP ``feature_cache``."""

    def __init__(self) -> None:
        super().__init__()
        self.hits = 0
        self.stores = 0

    def __getitem__(self, key: Any) -> Any:
        value = super().__getitem__(key)
        self.hits += 1
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self.stores += 1
        super().__setitem__(key, value)

    def stats(self) -> dict[str, int]:
        """``{"entries", "hits", "stores"}``."""
        return {"entries": len(self), "hits": self.hits, "stores": self.stores}


class SharedSelectorModels:
    """CLIP / Moment-DETR models built once per ablation and handed to every setting's selector.

    Selectors key their feature caches by the model object, so sharing the objects (and one
    ``feature_cache`` dict) is what makes CLIP frame embeddings and Moment-DETR clip features reusable
    across settings. Models are built lazily, on the first setting that needs them.
    """

    def __init__(self, runtime: Any, cfg: AblationConfig) -> None:
        self.runtime = runtime
        self.cfg = cfg
        self.feature_cache = CountingDict()
        self._clip: tuple[Any, Any] | None = None
        self._mdetr: Any = None

    @property
    def tiny(self) -> bool:
        return bool(getattr(self.runtime, "random_weights", False))

    def clip(self) -> tuple[Any, Any]:
        """``(CLIPModel, tokenizer)``: tiny random for random-weight runtimes without ``clip_model``."""
        if self._clip is None:
            from sevila_tools.selectors.clip import build_tiny_clip, load_clip

            if self.cfg.clip_model is None and self.tiny:
                model, tok, _ = build_tiny_clip()
                self._clip = (model.to(self.runtime.device).eval(), tok)
            else:
                from sevila_tools.selectors.clip import DEFAULT_CLIP_MODEL

                self._clip = load_clip(self.cfg.clip_model or DEFAULT_CLIP_MODEL, self.runtime.device)
        return self._clip

    def moment_detr(self) -> Any:
        """The Moment-DETR model (checkpoint, or tiny random over the tiny CLIP for random runtimes)."""
        if self._mdetr is None:
            from sevila_tools.selectors.moment_detr import build_tiny_moment_detr, load_moment_detr

            if self.cfg.mdetr_checkpoint is not None:
                self._mdetr = load_moment_detr(
                    self.cfg.mdetr_checkpoint, trusted=self.cfg.trust_checkpoint, device=self.runtime.device
                )
            elif self.tiny:
                clip_model, _ = self.clip()
                self._mdetr = build_tiny_moment_detr(
                    clip_model.config.projection_dim, clip_model.config.text_config.hidden_size
                )
            else:
                raise InputError(
                    "the moment_detr selector needs a checkpoint: pass --mdetr-checkpoint PATH "
                    "(the official run_on_video/moment_detr_ckpt/model_best.ckpt)"
                )
        return self._mdetr

    def options(self, selector: str) -> dict[str, Any]:
        """Construction options for ``selector`` (objects; see :func:`options_record` for the JSON view)."""
        if selector in ("clip", "scene"):
            model, tok = self.clip()
            return {"model": model, "tokenizer": tok, "feature_cache": self.feature_cache}
        if selector == "moment_detr":
            mdetr = self.moment_detr()
            clip_model, clip_tok = self.clip()
            return {
                "model": mdetr,
                "checkpoint": self.cfg.mdetr_checkpoint,
                "clip_model": clip_model,
                "clip_tokenizer": clip_tok,
                "frame_strategy": self.cfg.mdetr_strategy,
                "long_video": self.cfg.long_video,
                "trusted": self.cfg.trust_checkpoint,
                "feature_cache": self.feature_cache,
            }
        if selector == "random":
            return {"seed": self.cfg.seed}
        return {}


def options_record(selector: str, cfg: AblationConfig, random_weights: bool | None) -> dict[str, Any]:
    """JSON view of the options :class:`SharedSelectorModels` gives ``selector`` (recorded per row)."""
    tiny = bool(random_weights)
    clip_name = cfg.clip_model or ("tiny random CLIP (seeded)" if tiny else "openai/clip-vit-base-patch32")
    if selector in ("clip", "scene"):
        return {"clip_model": clip_name, "feature_cache": "shared across settings"}
    if selector == "moment_detr":
        ckpt = cfg.mdetr_checkpoint or ("tiny random Moment-DETR (seeded)" if tiny else None)
        return {
            "checkpoint": ckpt,
            "clip_model": clip_name,
            "frame_strategy": cfg.mdetr_strategy,
            "long_video": cfg.long_video,
            "trusted": cfg.trust_checkpoint,
            "feature_cache": "shared across settings",
        }
    if selector == "random":
        return {"seed": cfg.seed}
    return {}


# ================================================================================ helpers


def _latest(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One record per qid: a prediction beats an error; otherwise the later record wins (as the runner)."""
    out: dict[str, dict[str, Any]] = {}
    for rec in records:
        q = str(rec.get("qid"))
        old = out.get(q)
        if old is not None and not is_error(old) and is_error(rec):
            continue
        out[q] = rec
    return out


def score_prediction_file(
    dataset: str, path: str | Path, samples: list[Sample]
) -> tuple[dict[str, Any] | None, int, int, str | None]:
    """Score a per-setting prediction file on ``samples``: ``(metrics or None, predictions, errors, note)``.

    ``metrics`` is :func:`~sevila_tools.eval.scorers.score_multiple_choice` on the records with a
    prediction (``allow_missing`` when some question has none).
    """
    from .scorers import score_multiple_choice

    latest = _latest(read_records(path))
    ids = [s.qid for s in samples]
    preds = {q: int(latest[q]["prediction"]) for q in ids if q in latest and not is_error(latest[q])}
    errors = sum(1 for q in ids if q in latest and is_error(latest[q]))
    if any(s.answer is None for s in samples):
        return None, len(preds), errors, "no gold answers: not scored"
    if not preds:
        return None, 0, errors, "no predictions to score"
    metrics = score_multiple_choice(dataset, preds, samples, allow_missing=len(preds) < len(samples))
    note = None
    if len(preds) < len(samples):
        missing = len(samples) - len(preds)
        note = f"{missing} of {len(samples)} questions have no prediction (missing video/error)"
    return metrics, len(preds), errors, note


def metric_columns(dataset: str, rows: Sequence[AblationRow]) -> list[str]:
    """The table's metric columns for ``dataset`` (fixed order for NExT-QA and STAR)."""
    if dataset == "nextqa":
        return list(NEXTQA_COLUMNS)
    seen: list[str] = []
    for row in rows:
        for key in row.display:
            if key not in seen:
                seen.append(key)
    if dataset == "star":
        extra = [c for c in seen if c not in STAR_COLUMNS]
        return [c for c in STAR_COLUMNS[:4] if c in seen] + extra + list(STAR_COLUMNS[4:])
    return seen or ["Acc"]


def headline_name(dataset: str) -> str:
    """Name of the headline column (STAR: ``Avg.``, the macro type mean; else ``Acc``)."""
    return "Avg." if dataset == "star" else "Acc"


def long_video_stats(samples: Sequence[Sample], decoder: str = "auto") -> dict[str, Any]:
    """How many distinct (video, window) segments exceed Moment-DETR's 75 clips (150 s)."""
    from sevila_tools.selectors.moment_detr import MAX_CLIPS, clip_grid
    from sevila_tools.video import probe, sample_indices

    segments = list(dict.fromkeys((s.video, s.start, s.end) for s in samples))
    affected: list[str] = []
    unknown = 0
    for video, start, end in segments:
        try:
            info = probe(video, decoder=decoder)  # type: ignore[arg-type]
            _, edges, _ = sample_indices(info.num_frames, 1, info.fps, start=start, end=end)
            if clip_grid(edges[0], edges[-1], info.fps).num_clips > MAX_CLIPS:
                affected.append(video)
        except (VideoError, InputError):
            unknown += 1
    return {
        "segments": len(segments),
        "affected_videos": len(affected),
        "first_affected": [os.path.basename(v) for v in affected[:5]],
        "unreadable": unknown,
        "max_clips": MAX_CLIPS,
    }


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _frames_cell(row: AblationRow) -> str:
    return f"{row.frames}→{row.keyframes}" + (" ¹" if row.selector == "uniform" else "")


def fingerprint(setting: Setting, cfg: AblationConfig) -> dict[str, Any]:
    """What must not change between a setting's first run and a resumed one."""
    fp: dict[str, Any] = {
        "dataset": cfg.dataset,
        "model": cfg.model,
        "checkpoint": cfg.checkpoint,
        "decoding": cfg.decoding,
        "selector": setting.selector,
        "frames": setting.frames,
        "keyframes": setting.keyframes,
        "answerer": setting.answerer,
    }
    if setting.selector in ("clip", "scene", "moment_detr"):
        fp["clip_model"] = cfg.clip_model
    if setting.selector == "moment_detr":
        fp.update(
            mdetr_checkpoint=cfg.mdetr_checkpoint,
            mdetr_strategy=cfg.mdetr_strategy,
            long_video=cfg.long_video,
        )
    if setting.selector == "random":
        fp["seed"] = cfg.seed
    return fp


def _check_resumable(saved: dict[str, Any], want: dict[str, Any], path: Path) -> None:
    old = (saved.get("ablation") or {}).get("fingerprint") or {}
    for key, value in want.items():
        if key in old and old[key] != value:
            raise InputError(
                f"{path} was written with {key}={old[key]!r}, this run uses {value!r}; "
                "use another --out, the same settings, or --overwrite"
            )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ================================================================================ writers


def _checkpoint_used(result: AblationResult) -> str:
    used = {str(r.config.get("checkpoint") or "none") for r in result.rows if "checkpoint" in r.config}
    if len(used) == 1:
        return used.pop()
    return str(result.config.get("checkpoint"))


def render_markdown(result: AblationResult) -> str:
    """``results.md``: a title, the run's key facts, the table and numbered notes."""
    cols = result.columns
    conf = result.config
    lines = [f"# SeViLA keyframe ablation: {result.dataset}", ""]
    facts = [
        f"annotations `{conf.get('annotations')}`",
        f"{result.questions} questions" + (f" (--limit {conf['limit']})" if conf.get("limit") else ""),
        f"model `{conf.get('model')}`",
        f"checkpoint `{_checkpoint_used(result)}`",
        f"decoding `{conf.get('decoding')}`",
    ]
    lines += ["; ".join(facts), ""]
    if result.notice:
        lines += [f"> **{result.notice}**", ""]
    header = ["Selector", "Frames→Keyframes", "Answerer", *cols, "n"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(cols) + 1)) + "|")
    for row in result.rows:
        cells = [row.selector, _frames_cell(row), row.answerer]
        cells += [_fmt(row.display.get(c)) for c in cols]
        cells.append(f"{row.n}" if row.n == row.n_total else f"{row.n}/{row.n_total}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if result.notes:
        lines.append("Notes:")
        lines.append("")
        for i, note in enumerate(result.notes, 1):
            lines.append(f"{i}. {note}")
        lines.append("")
    return "\n".join(lines)


def render_csv(result: AblationResult) -> str:
    """``results.csv``: one line per row; metric columns as numbers (empty when undefined); full config as
    a JSON string in the last column."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "setting",
            "selector",
            "frames",
            "keyframes",
            "answerer",
            *result.columns,
            "n",
            "n_total",
            "predictions",
            "errors",
            "grid_entries",
            "predictions_file",
            "config",
        ]
    )
    for row in result.rows:
        w.writerow(
            [row.setting, row.selector, row.frames, row.keyframes, row.answerer]
            + ["" if row.display.get(c) is None else row.display[c] for c in result.columns]
            + [
                row.n,
                row.n_total,
                row.predictions,
                row.errors,
                " ".join(row.grid_entries),
                row.predictions_file,
                json.dumps(row.config, sort_keys=True, default=str),
            ]
        )
    return buf.getvalue()


def render_png(result: AblationResult, path: Path) -> Path:
    """``results.png``: headline accuracy per setting (matplotlib Agg canvas, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = result.rows
    labels = [f"{r.selector} {r.frames}→{r.keyframes} {r.answerer}" for r in rows]
    values = [r.headline if r.headline is not None else 0.0 for r in rows]
    selectors = list(dict.fromkeys(r.selector for r in rows))
    fig = Figure(figsize=(8.0, 1.6 + 0.32 * max(len(rows), 1)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colours = [f"C{selectors.index(r.selector) % 10}" for r in rows]
    pos = list(range(len(rows)))
    ax.barh(pos, values, color=colours)
    for y, r, v in zip(pos, rows, values, strict=True):
        text = "n/a" if r.headline is None else f"{r.headline:.2f}"
        ax.text(v + 1, y, text, va="center", fontsize=7)
    ax.set_yticks(pos)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()  # first row on top, as in the table
    ax.set_xlim(0, 110)
    ax.set_xlabel(f"{result.headline_metric} (%)")
    title = f"SeViLA keyframe ablation: {result.dataset} ({result.questions} questions)"
    if result.notice:
        title += "\n" + result.notice
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


# ================================================================================ main entry


def run_ablation(
    config: AblationConfig | dict[str, Any],
    runtime: Any = None,
    progress: bool = True,
    console: Any = None,
    on_status: Callable[[str], None] | None = None,
) -> AblationResult:
    """Run every (selector, frames -> keyframes, answerer) setting and write the results table.

    Args:
        config: :class:`AblationConfig` (or a dict of its fields).
        runtime: an already loaded runtime; otherwise loaded from ``config.model`` / ``checkpoint`` /
            ``device`` when the first unfinished setting needs it (a fully resumed ablation loads nothing).
        progress: the runner's progress bar per setting (stderr).
        console: rich console for the progress bars.
        on_status: called with one-line status notes (per setting, resume counts, warnings).

    Returns:
        :class:`AblationResult` (also written to ``out/results.json``).

    Raises:
        InputError: bad options/grid, selectors that cannot run, existing output without
            ``resume``/``overwrite``, a resumed setting written with other settings.
        VideoError: missing/unreadable videos without ``skip_missing``.
    """
    cfg = config if isinstance(config, AblationConfig) else AblationConfig.model_validate(config)
    say = on_status or (lambda msg: log.info("%s", msg))
    t0 = time.perf_counter()

    # ---------------------------------------------------------------- annotations, selectors, pre-flight
    if cfg.videos is None:
        raise InputError("--videos (the folder holding the videos) is required")
    all_samples = load_annotations(cfg.dataset, cfg.annotations, cfg.videos, cfg.video_map, cfg.video_ext)
    selected = all_samples[: cfg.limit] if cfg.limit else list(all_samples)
    if not selected:
        raise InputError(f"no questions in {cfg.annotations}")
    has_gold = all(s.answer is not None for s in selected)
    from sevila_tools.selectors import available_selectors

    moment_detr_ok = cfg.mdetr_checkpoint is not None or cfg.model == TINY_MODEL
    skipped: dict[str, str] = {}
    if cfg.selectors is None:
        selectors, skipped = default_selectors(has_gold, moment_detr_ok)
    else:
        selectors = list(cfg.selectors)
        unknown = [s for s in selectors if s not in available_selectors()]
        if unknown:
            raise InputError(
                f"unknown selector {unknown[0]!r}; choose from: {', '.join(available_selectors())}"
            )
        if "oracle" in selectors and not has_gold:
            raise InputError("the oracle selector needs gold answers, and the annotations have none")
        if "moment_detr" in selectors and not moment_detr_ok:
            raise InputError(
                "the moment_detr selector needs --mdetr-checkpoint PATH (only --model tiny-random runs a "
                "tiny random Moment-DETR without one)"
            )
    settings = plan_settings(selectors, cfg.grid, cfg.answerers)

    report = preflight(selected, check_readable=False)
    unreadable = [
        v
        for v in dict.fromkeys(s.video for s in report.ok)
        if not os.access(v, os.R_OK) or not os.path.isfile(v)
    ]
    bad = list(report.missing) + unreadable
    if bad:
        msg = (
            f"{len(bad)} of {report.total_videos} videos missing or unreadable (first: {', '.join(bad[:3])})"
        )
        if not cfg.skip_missing:
            raise VideoError(f"{msg}; pass --skip-missing to evaluate the others")
        say(f"warning: {msg}; skipping their questions (--skip-missing)")
    bad_set = set(bad)
    runnable_ids = [s.qid for s in selected if s.video not in bad_set]

    # ---------------------------------------------------------------- output state
    out = cfg.out
    if out.exists() and not out.is_dir():
        raise InputError(f"--out must be a folder: {out} is a file")
    preds_dir = out / "preds"
    pred_paths = {st.id: preds_dir / f"{st.id}.jsonl" for st in settings}
    existing = [p for p in pred_paths.values() if p.exists() and p.stat().st_size > 0]
    if existing and not (cfg.resume or cfg.overwrite):
        raise InputError(
            f"{preds_dir} already holds predictions for {len(existing)} of these settings; pass --resume to "
            "continue or --overwrite to replace them"
        )
    preds_dir.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- settings
    state: dict[str, Any] = {"runtime": runtime, "models": None}

    def get_runtime() -> Any:
        if state["runtime"] is None:
            from sevila_tools.loading import load_runtime

            say(f"loading {cfg.model} ...")
            state["runtime"] = load_runtime(
                cfg.model, cfg.checkpoint, device=cfg.device, trust_checkpoint=cfg.trust_checkpoint
            )
        if state["models"] is None:
            state["models"] = SharedSelectorModels(state["runtime"], cfg)
        return state["runtime"]

    rows: list[AblationRow] = []
    vit = {"hits": 0, "misses": 0, "writes": 0, "errors": 0, "decoded_videos": 0}
    vit_dir: str | None = None
    random_flags: list[bool] = []
    mdetr_stats: dict[str, Any] | None = None
    runnable_samples = [s for s in selected if s.video not in bad_set]
    n_run = n_resumed = 0
    if "moment_detr" in selectors:
        mdetr_stats = {"long_video": cfg.long_video, **long_video_stats(runnable_samples, cfg.decoder)}
        if cfg.long_video == "refuse" and mdetr_stats["affected_videos"]:
            raise InputError(
                f"{mdetr_stats['affected_videos']} video(s) exceed Moment-DETR's {mdetr_stats['max_clips']} "
                f"clips (150 s; first: {', '.join(mdetr_stats['first_affected'][:3])}) and --long-video "
                "refuse stops on them; use --long-video sliding or stride"
            )
    for i, st in enumerate(settings, 1):
        pred = pred_paths[st.id]
        summ_path = preds_dir / f"{st.id}.summary.json"
        saved = _read_json(summ_path) if cfg.resume else None
        want = fingerprint(st, cfg)
        if saved is not None:
            _check_resumable(saved, want, pred)
        done = False
        if cfg.resume and pred.exists() and saved is not None:
            latest = _latest(read_records(pred))
            done = not [
                q for q in runnable_ids if q not in latest or (cfg.retry_errors and is_error(latest[q]))
            ]
        if done:
            assert saved is not None
            n_resumed += 1
            say(f"[{i}/{len(settings)}] {st.label}: finished earlier ({pred.name}), not run again")
            summary_conf = saved.get("config", {})
            elapsed = saved.get("elapsed_s")
            status: Literal["run", "resumed"] = "resumed"
        else:
            rt = get_runtime()
            models: SharedSelectorModels = state["models"]
            say(f"[{i}/{len(settings)}] {st.label}")
            ecfg = EvalConfig(
                dataset=cfg.dataset,
                annotations=cfg.annotations,
                out=pred,
                videos=cfg.videos,
                video_map=cfg.video_map,
                video_ext=cfg.video_ext,
                selector=st.selector,
                selector_options=models.options(st.selector),
                frames=st.frames,
                keyframes=st.keyframes,
                decoding=cfg.decoding,
                answerer=st.answerer,
                limit=cfg.limit,
                resume=cfg.resume and pred.exists(),
                overwrite=cfg.overwrite,
                retry_errors=cfg.retry_errors,
                skip_missing=cfg.skip_missing,
                model=cfg.model,
                checkpoint=cfg.checkpoint,
                device=cfg.device,
                trust_checkpoint=cfg.trust_checkpoint,
                decoder=cfg.decoder,
                batch_size=cfg.batch_size,
                cache=cfg.cache,
                cache_dir=cfg.cache_dir,
                prefetch=cfg.prefetch,
                seed=cfg.seed,
            )
            summary: EvalSummary = run_eval(
                ecfg, runtime=rt, progress=progress, console=console, on_status=on_status
            )
            n_run += 1
            for key in vit:
                vit[key] += int(summary.cache.get(key, 0) or 0)
            vit_dir = summary.cache.get("dir", vit_dir)
            record = summary.model_dump(mode="json")
            record.pop("metrics", None)
            record["ablation"] = {"setting": st.id, "grid_entries": st.grid_entries, "fingerprint": want}
            _write_text(summ_path, json.dumps(record, indent=2, default=str) + "\n")
            summary_conf = record["config"]
            elapsed = summary.elapsed_s
            status = "run"
        random_flags.append(bool(summary_conf.get("random_weights")))

        metrics, n_pred, n_err, note = score_prediction_file(cfg.dataset, pred, selected)
        row_conf = dict(summary_conf)
        row_conf["selector_options"] = options_record(st.selector, cfg, summary_conf.get("random_weights"))
        row_conf["grid_entries"] = st.grid_entries
        if st.selector == "uniform":
            row_conf["frames_rule"] = "n = k midpoints (selectors.md §2); grid frame count unused"
        if st.selector == "moment_detr" and mdetr_stats is not None:
            row_conf["long_video"] = cfg.long_video
            row_conf["long_video_affected_videos"] = mdetr_stats["affected_videos"]
        rows.append(
            AblationRow(
                setting=st.id,
                selector=st.selector,
                frames=st.frames,
                keyframes=st.keyframes,
                answerer=st.answerer,
                grid_entries=st.grid_entries,
                status=status,
                display=dict(metrics["display"]) if metrics else {},
                headline=None if metrics is None else metrics["headline"]["value"],
                n=0 if metrics is None else int(metrics["n"]),
                n_total=len(selected),
                predictions=n_pred,
                errors=n_err,
                metrics=metrics,
                note=note,
                predictions_file=str(pred),
                summary_file=str(summ_path),
                elapsed_s=elapsed,
                config=row_conf,
            )
        )

    # ---------------------------------------------------------------- notes + files
    random_weights = any(random_flags) if random_flags else None
    notes: list[str] = []
    if any(r.selector == "uniform" for r in rows):
        notes.append("¹ " + UNIFORM_NOTE + ".")
    if any(r.selector == "oracle" for r in rows):
        notes.append(ORACLE_NOTE + ".")
    if mdetr_stats is not None:
        notes.append(
            f"moment_detr: long_video={cfg.long_video}, frame_strategy={cfg.mdetr_strategy}; "
            f"{mdetr_stats['affected_videos']} of {mdetr_stats['segments']} videos exceed "
            f"{mdetr_stats['max_clips']} clips (150 s)."
        )
    for name, why in skipped.items():
        notes.append(f"selector {name} not run: {why}.")
    if cfg.limit is not None:
        notes.append(f"--limit {cfg.limit}: scored on the first {len(selected)} questions only.")
    if not has_gold:
        notes.append("the annotations carry no gold answers: predictions only, nothing scored.")
    if len(runnable_ids) < len(selected):
        notes.append(f"{len(selected) - len(runnable_ids)} questions skipped (missing videos).")
    for r in rows:
        if r.note:
            notes.append(f"{r.setting}: {r.note}.")
    if not cfg.cache:
        notes.append("feature cache off (--no-cache): ViT features were recomputed for every setting.")
    notice = "RANDOM WEIGHTS (tiny-random preset): metrics are meaningless" if random_weights else None

    models = state["models"]
    result = AblationResult(
        dataset=cfg.dataset,
        out=str(out),
        headline_metric=headline_name(cfg.dataset),
        rows=rows,
        selectors=selectors,
        skipped_selectors=skipped,
        grid=[f"{n}:{k}" for n, k in cfg.grid],
        answerers=list(cfg.answerers),
        questions=len(selected),
        runnable=len(runnable_ids),
        settings_run=n_run,
        settings_resumed=n_resumed,
        vit_cache={"enabled": cfg.cache, "dir": vit_dir, **vit},
        clip_feature_cache=models.feature_cache.stats()
        if models is not None
        else {"entries": 0, "hits": 0, "stores": 0},
        moment_detr_long_video=mdetr_stats,
        notes=notes,
        random_weights=random_weights,
        notice=notice,
        config=cfg.model_dump(mode="json"),
    )
    result.columns = metric_columns(cfg.dataset, rows)
    files = {
        "markdown": out / "results.md",
        "csv": out / "results.csv",
        "json": out / "results.json",
        "png": out / "results.png",
    }
    result.files = {k: str(v) for k, v in files.items()}
    _write_text(files["markdown"], render_markdown(result))
    _write_text(files["csv"], render_csv(result))
    render_png(result, files["png"])
    result.elapsed_s = round(time.perf_counter() - t0, 3)
    _write_text(files["json"], json.dumps(result.model_dump(mode="json"), indent=2, default=str) + "\n")
    return result


__all__ = [
    "DEFAULT_GRID",
    "SELECTOR_ORDER",
    "AblationConfig",
    "AblationResult",
    "AblationRow",
    "CountingDict",
    "Setting",
    "SharedSelectorModels",
    "default_selectors",
    "headline_name",
    "long_video_stats",
    "metric_columns",
    "options_record",
    "parse_grid",
    "parse_names",
    "plan_settings",
    "render_csv",
    "render_markdown",
    "render_png",
    "run_ablation",
    "score_prediction_file",
]
