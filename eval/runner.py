"""Dataset-scale evaluation: annotations + videos -> streamed predictions -> metrics (``sevila eval``).

:func:`run_eval` is the library entry point; ``sevila eval`` (:mod:`sevila_tools.cli.cmd_eval`) is a thin CLI
over it. One run:

1. **Load + pre-flight** (before any model loads): read the annotations (:func:`~sevila_tools.eval.datasets.
   load_annotations`), keep the first ``limit`` samples (annotation order), check every video exists and is a
   readable file. Missing/unreadable videos stop the run with a count and the first names, unless
   ``skip_missing``.
2. **Resume**: with ``resume``, ids already in the output (and in shard files of an interrupted multi-process
   run) are skipped; a torn last line (killed mid-write) is dropped.
3. **Predict**: samples are grouped by (video, window) so each video is decoded and run through the ViT once
   per run (and not at all on a feature-cache hit, :class:`~sevila_tools.cache.DiskFeatureCache`); decoding
   runs ``prefetch`` videos ahead in a background thread; questions are batched through the model
   (``runtime.localizer_logits`` and ``runtime.answer`` on ``B`` questions). Records stream to the JSON Lines
   output, flushed and fsynced after every batch, so a killed run loses at most the batch in flight. A sample
   whose video cannot be decoded gets ``{"qid", "video", "error"}`` and the run goes on.
4. **Finish**: the output is rewritten atomically in annotation order (one record per id, the latest wins),
   so the final file does not depend on interruptions, ``--limit`` + resume, or the number of processes; the
   metrics come from :mod:`sevila_tools.eval.scorers` on that file.

Batches are canonical: all runnable samples, grouped by video, cut into consecutive ``batch_size`` chunks. A
resumed run recomputes a partially finished batch whole (writing only the missing ids) and a sharded run hands
each rank a contiguous block of these batches, so every question sees exactly the batch it would see in one
uninterrupted single-process run (batch composition changes the last bits of the logits).

Scale-out: under ``accelerate launch`` / ``torchrun`` (``WORLD_SIZE > 1``) an :class:`accelerate.PartialState`
(gloo on CPU) gives the rank; every rank streams to ``<out>.rank<r>.part``; after a barrier rank 0 merges
everything into ``<out>`` and scores it.

Multiple-choice records follow ``evaluation.md`` §7 (``qid, video, qtype, prediction, answer, letter_probs,
keyframe_idx, keyframe_sec, keyframe_scores, selector, decoding, answerer, step0_token, truncated``).
QVHighlights records are submission lines (§5.1) built from the Localizer's per-frame yes/no logits on 75
uniform frames (:func:`~sevila_tools.eval.moments.frames_to_windows`, :func:`~sevila_tools.eval.moments.
frames_to_saliency`); their error records go to ``<out>.errors.jsonl`` at the end so the submission stays
valid.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import tempfile
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sevila_tools.errors import InputError, SevilaError, VideoError
from sevila_tools.features import FrameSet, features_at
from sevila_tools.prompts import prompts_for

from .datasets import Sample, check_dataset, load_annotations, preflight, qvh_ground_truth
from .moments import SpanConfig, frames_to_saliency, frames_to_windows, submission_record, yes_probabilities

log = logging.getLogger("sevila_tools.eval")

DEFAULT_MODEL = "Salesforce/blip2-flan-t5-xl"
DEFAULT_FRAMES = 32
QVH_FRAMES = 75
SHARD_SUFFIX = ".rank{rank}.part"
_SHARD_RE = re.compile(r"\.rank\d+\.part$")


# ================================================================================ config / summary


class EvalConfig(BaseModel):
    """Everything that defines one evaluation run (recorded in the summary).

    ``frames`` defaults to 32 (75 for ``qvhighlights``: one frame per 2-s clip of a 150-s video). ``limit``
    keeps the first N samples of the annotation file. ``cache_dir=None`` means :func:`~sevila_tools.cache.
    default_cache_dir` (``$SEVILA_CACHE_DIR`` or ``~/.cache/sevila_tools/features``).
    """

    model_config = ConfigDict(extra="forbid")

    dataset: str
    annotations: Path
    out: Path
    videos: Path | None = None
    video_map: Path | None = None
    video_ext: str = ".mp4"
    selector: str = "localizer"
    selector_options: dict[str, Any] = Field(default_factory=dict)
    frames: int | None = Field(default=None, ge=1, le=256)
    keyframes: int = Field(default=4, ge=1, le=64)
    decoding: Literal["faithful", "teacher_forced"] = "faithful"
    answerer: Literal["concat", "voting"] = "concat"
    limit: int | None = Field(default=None, ge=1)
    resume: bool = False
    overwrite: bool = False
    retry_errors: bool = False
    skip_missing: bool = False
    model: str = DEFAULT_MODEL
    checkpoint: str = "auto"
    device: str = "auto"
    trust_checkpoint: bool = False
    decoder: str = "auto"
    batch_size: int = Field(default=8, ge=1, le=1024)
    cache: bool = True
    cache_dir: Path | None = None
    prefetch: int = Field(default=2, ge=0, le=64)
    span: SpanConfig = Field(default_factory=SpanConfig)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        self.dataset = check_dataset(self.dataset)
        if self.dataset != "qvhighlights" and self.keyframes > self.num_frames and self.selector != "uniform":
            raise ValueError(f"keyframes ({self.keyframes}) exceeds frames ({self.num_frames})")
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite exclude each other")
        return self

    @property
    def num_frames(self) -> int:
        """Candidate frames per video (dataset default when ``frames`` is unset)."""
        if self.frames is not None:
            return self.frames
        return QVH_FRAMES if self.dataset == "qvhighlights" else DEFAULT_FRAMES

    @property
    def is_qvh(self) -> bool:
        return self.dataset == "qvhighlights"


class EvalSummary(BaseModel):
    """Outcome of :func:`run_eval` (printed by the CLI; ``--json`` prints it as one object)."""

    dataset: str
    out: str
    errors_file: str | None = Field(default=None, description="QVHighlights: where error records were moved.")
    samples: int = Field(description="Samples selected (after --limit).")
    runnable: int = Field(description="Samples whose video passed the pre-flight check.")
    skipped_missing: int = 0
    missing_videos: list[str] = Field(default_factory=list, description="First missing/unreadable videos.")
    resumed: int = Field(0, description="Samples already in the output (skipped by --resume).")
    processed: int = Field(0, description="Samples run by this invocation (all processes).")
    predictions: int = Field(
        0, description="Records with a prediction in the final output (selected samples)."
    )
    errors: int = Field(0, description="Error records in the final output (selected samples).")
    errors_this_run: int = 0
    first_errors: list[dict[str, str]] = Field(default_factory=list)
    elapsed_s: float = 0.0
    load_s: float = 0.0
    samples_per_s: float | None = None
    batch_size: int = 1
    world_size: int = 1
    cache: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    metrics_note: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    notice: str | None = None
    is_main_process: bool = True


# ================================================================================ record files


def _qid(rec: dict[str, Any]) -> str:
    return str(rec.get("qid"))


def is_error(rec: dict[str, Any]) -> bool:
    """True for an error record (no prediction)."""
    return bool(rec.get("error"))


def read_records(path: str | Path, repair: bool = False) -> list[dict[str, Any]]:
    """Records of a JSON Lines prediction file; a torn last line (killed mid-write) is ignored.

    With ``repair`` the torn tail is cut off the file (and a missing final newline added) so it can be
    appended to.
    Raises :class:`InputError` for an invalid line that is not the last one.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    records: list[dict[str, Any]] = []
    pos = 0
    good_end = 0
    lineno = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl
        line = data[pos:end]
        lineno += 1
        last = nl < 0 or data[nl + 1 :].strip() == b""
        if line.strip():
            try:
                rec = json.loads(line.decode("utf-8"))
                if not isinstance(rec, dict) or "qid" not in rec:
                    raise ValueError("not a record with a qid")
            except (ValueError, UnicodeDecodeError) as exc:
                if last:
                    log.warning("%s: ignoring torn last line %d", path, lineno)
                    break
                raise InputError(f"{path}:{lineno}: invalid prediction record ({exc})") from None
            records.append(rec)
        good_end = end if nl < 0 else nl + 1
        pos = end + 1
    if repair:
        if good_end < len(data):
            with open(path, "r+b") as f:
                f.truncate(good_end)
        elif data and not data.endswith(b"\n"):
            with open(path, "ab") as f:
                f.write(b"\n")
    return records


def _dumps(rec: dict[str, Any]) -> str:
    return json.dumps(rec, ensure_ascii=False, separators=(", ", ": "))


def _atomic_write_lines(path: Path, records: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for rec in records:
                f.write(_dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class _Writer:
    """Append-only JSON Lines stream; :meth:`write_batch` flushes and fsyncs."""

    def __init__(self, path: Path, fresh: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.f = open(path, "w" if fresh else "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write_batch(self, records: Sequence[dict[str, Any]]) -> None:
        for rec in records:
            self.f.write(_dumps(rec) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


def shard_files(out: Path) -> list[Path]:
    """Per-rank shard files of ``out`` left by a (possibly interrupted) multi-process run."""
    if not out.parent.is_dir():
        return []
    return sorted(p for p in out.parent.glob(out.name + ".rank*.part") if _SHARD_RE.search(p.name))


def errors_file(out: Path) -> Path:
    """Where QVHighlights error records go (the submission itself must hold only valid entries)."""
    return (
        out.with_name(out.name + ".errors.jsonl")
        if not out.name.endswith(".jsonl")
        else (out.with_name(out.name[: -len(".jsonl")] + ".errors.jsonl"))
    )


def _existing_records(out: Path, is_qvh: bool) -> list[dict[str, Any]]:
    recs = read_records(out, repair=True)
    if is_qvh:
        recs = read_records(errors_file(out)) + recs
    for shard in shard_files(out):
        recs += read_records(shard, repair=True)
    return recs


def _latest(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One record per qid: a prediction beats an error; otherwise the later record wins."""
    out: dict[str, dict[str, Any]] = {}
    for rec in records:
        q = _qid(rec)
        old = out.get(q)
        if old is not None and not is_error(old) and is_error(rec):
            continue
        out[q] = rec
    return out


def compact(out: Path, order: dict[str, int], is_qvh: bool) -> tuple[dict[str, dict[str, Any]], Path | None]:
    """Merge ``out`` + shard files (+ the QVHighlights error file) into ``out`` (annotation order, atomic).

    Returns ``(records by qid, errors file or None)``; shard files are removed afterwards.
    """
    shards = shard_files(out)
    latest = _latest(_existing_records(out, is_qvh))
    big = len(order)
    ranked = sorted(
        latest.values(), key=lambda r: (order.get(_qid(r), big), _qid(r) if _qid(r) not in order else "")
    )
    err_path = None
    if is_qvh:
        err_path = errors_file(out)
        errs = [r for r in ranked if is_error(r)]
        _atomic_write_lines(out, [r for r in ranked if not is_error(r)])
        if errs:
            _atomic_write_lines(err_path, errs)
        elif err_path.exists():
            err_path.unlink()
    else:
        _atomic_write_lines(out, ranked)
    for shard in shards:
        try:
            shard.unlink()
        except OSError:
            pass
    return latest, err_path


# ================================================================================ distribution


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    state: Any = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()

    def gather(self, obj: Any) -> list[Any]:
        if self.state is None:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out


def _use_cpu_backend(device: str) -> bool:
    if device == "cpu" or not torch.cuda.is_available():
        return True
    return os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")


def _distributed(device: str) -> _Dist:
    """Rank/world from :class:`accelerate.PartialState` when launched with several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return _Dist()
    from accelerate import PartialState

    state = PartialState(cpu=_use_cpu_backend(device))
    if state.num_processes <= 1:
        return _Dist()
    return _Dist(
        rank=state.process_index, world=state.num_processes, local_rank=state.local_process_index, state=state
    )


def _rank_device(device: str, dist: _Dist) -> str:
    if dist.world <= 1 or device not in ("auto", "cuda"):
        return device
    if _use_cpu_backend(device):
        return "cpu"
    return f"cuda:{dist.local_rank % max(torch.cuda.device_count(), 1)}"


# ================================================================================ grouping


def _spec(sample: Sample, n: int) -> tuple[str, float | None, float | None, int]:
    return (sample.video, sample.start, sample.end, n)


def group_by_video(samples: Sequence[Sample], n: int) -> list[list[Sample]]:
    """Samples grouped by (video, start, end), groups in order of first appearance."""
    groups: OrderedDict[tuple, list[Sample]] = OrderedDict()
    for s in samples:
        groups.setdefault(_spec(s, n), []).append(s)
    return list(groups.values())


def plan_batches(samples: Sequence[Sample], n: int, batch_size: int) -> list[list[Sample]]:
    """Samples grouped by video (groups in order of first appearance), cut into consecutive batches."""
    ordered = [s for g in group_by_video(samples, n) for s in g]
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def shard_batches(batches: Sequence[list[Sample]], rank: int, world: int) -> list[list[Sample]]:
    """Contiguous block ``rank`` of ``world`` nearly equal blocks of batches (keeps each video's questions together
    except at block edges)."""
    if world <= 1:
        return list(batches)
    lo = len(batches) * rank // world
    hi = len(batches) * (rank + 1) // world
    return list(batches[lo:hi])


# ================================================================================ frame sets


class _FrameSource:
    """Frame sets per (video, window): disk cache -> decode (background thread) -> ViT (caller's thread)."""

    def __init__(self, runtime: Any, cfg: EvalConfig, cache: Any, vit_id: str, n: int) -> None:
        self.runtime = runtime
        self.cfg = cfg
        self.cache = cache
        self.vit_id = vit_id
        self.n = n
        self.pool = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="sevila-decode") if cfg.prefetch else None
        )
        self.futures: dict[tuple, Future] = {}
        self.submitted: set[tuple] = set()
        self.decoded = 0

    def _key(self, spec: tuple) -> str:
        from sevila_tools.cache import feature_key, resolve_decoder

        video, start, end, n = spec
        return feature_key(
            video,
            self.vit_id,
            n=n,
            start=start,
            end=end,
            decoder=resolve_decoder(self.cfg.decoder),
            size=224,
            mode="uniform",
        )

    def _fetch(self, spec: tuple) -> Any:
        """Cache hit -> FrameSet; miss -> (key, SampledFrames) still to be run through the ViT."""
        from sevila_tools.video import sample_frames

        video, start, end, n = spec
        key = None
        if self.cache is not None:
            key = self._key(spec)
            hit = self.cache.get(key)
            if hit is not None:
                return hit
        frames = sample_frames(video, n, start=start, end=end, decoder=self.cfg.decoder)
        return key, frames

    def prefetch(self, specs: Iterable[tuple]) -> None:
        if self.pool is None:
            return
        for spec in specs:
            if spec not in self.submitted:
                self.submitted.add(spec)
                self.futures[spec] = self.pool.submit(self._fetch, spec)

    def get(self, spec: tuple) -> FrameSet:
        """The frame set for ``spec``; raises VideoError/InputError when the video cannot be decoded."""
        self.submitted.add(spec)
        fut = self.futures.pop(spec, None)
        got = fut.result() if fut is not None else self._fetch(spec)
        if isinstance(got, FrameSet):
            return got
        key, frames = got
        self.decoded += 1
        fs = FrameSet(video=spec[0], frames=frames, raw=self.runtime.vit(frames.frames))
        if self.cache is not None and key is not None:
            self.cache.put(key, fs)
        return fs

    def close(self) -> None:
        if self.pool is not None:
            for fut in self.futures.values():
                fut.cancel()
            self.pool.shutdown(wait=True)


# ================================================================================ prediction


def _r(x: float, nd: int = 6) -> float:
    return float(round(float(x), nd))


@dataclass
class _Picked:
    positions: list[int | None]
    frame_indices: list[int]
    times: list[float]
    scores: list[float | None]
    raw_kf: torch.Tensor
    extra: dict[str, Any] = field(default_factory=dict)


class _Predictor:
    """Batched forward chain (selector -> Answerer) and the QVHighlights localizer path."""

    def __init__(self, runtime: Any, cfg: EvalConfig) -> None:
        from sevila_tools.chain import SevilaChain

        self.rt = runtime
        self.cfg = cfg
        opts = dict(cfg.selector_options)
        if cfg.selector == "random":
            opts.setdefault("seed", cfg.seed)
        self.chain = SevilaChain(
            runtime,
            decoder=cfg.decoder,
            dataset=cfg.dataset,
            selector_options={cfg.selector: opts},
        )
        self.selector = None
        if not cfg.is_qvh and cfg.selector != "uniform":
            self.selector = self.chain.localizer.selector(cfg.selector)

    def selector_config(self) -> dict[str, Any]:
        if self.cfg.is_qvh:
            return {"score": "raw yes logit at decoder step 0", "prompt": "qvhighlights"}
        if self.cfg.selector == "uniform":
            return {"rule": "midpoint, n=k"}
        return self.selector.config() if self.selector is not None else {}

    # ------------------------------------------------------------------ multiple choice
    def _select(self, items: list[tuple[Sample, FrameSet]]) -> list[_Picked]:
        k = self.cfg.keyframes
        name = self.cfg.selector
        if name == "uniform":  # the frame set holds exactly the k uniform keyframes
            return [
                _Picked(
                    positions=list(range(len(fs.frames.indices))),
                    frame_indices=list(fs.frames.indices),
                    times=[float(t) for t in fs.frames.timestamps],
                    scores=[None] * len(fs.frames.indices),
                    raw_kf=fs.raw,
                )
                for _, fs in items
            ]
        from sevila_tools.selectors.base import SelectorInput

        inputs = [
            SelectorInput(
                video=fs.video,
                candidates=fs.frames,
                question=s.question,
                options=list(s.options),
                start=s.start,
                end=s.end,
                raw_features=fs.raw,
                answer=s.answer,
            )
            for s, fs in items
        ]
        selections = self.selector.select_many(inputs, k)  # the Localizer batches all questions in one call
        picked = []
        for (_, fs), sel in zip(items, selections, strict=True):
            raw_kf = features_at(self.rt, fs, sel.frame_indices, self.cfg.decoder)
            extra = {"any_correct": sel.extra.get("any_correct")} if "any_correct" in sel.extra else {}
            picked.append(
                _Picked(
                    positions=list(sel.candidate_positions),
                    frame_indices=list(sel.frame_indices),
                    times=list(sel.times),
                    scores=list(sel.scores),
                    raw_kf=raw_kf,
                    extra=extra,
                )
            )
        return picked

    def predict_mc(self, items: list[tuple[Sample, FrameSet]]) -> list[dict[str, Any]]:
        """One record per item (same order)."""
        cfg = self.cfg
        picked = self._select(items)
        answers: list[dict[str, Any] | None] = [None] * len(items)
        if cfg.answerer == "concat":
            buckets: dict[tuple[int, int], list[int]] = {}
            for i, ((s, _), p) in enumerate(zip(items, picked, strict=True)):
                buckets.setdefault((len(s.options), p.raw_kf.shape[0]), []).append(i)
            for (n_opt, _), idx in buckets.items():
                raw_kf = torch.stack([picked[i].raw_kf for i in idx])
                qa = [
                    prompts_for(cfg.dataset, items[i][0].question, list(items[i][0].options))[1] for i in idx
                ]
                out = self.rt.answer(raw_kf, qa, n_opt, cfg.decoding)
                probs = out.probs.tolist()
                preds = out.predictions
                for j, i in enumerate(idx):
                    answers[i] = {
                        "prediction": int(preds[j]),
                        "letter_probs": [_r(p) for p in probs[j]],
                        "step0_token": self.rt.token_str(out.step0_tokens[j]),
                        "truncated": bool(out.truncated[j]),
                    }
        else:
            for i, ((s, fs), p) in enumerate(zip(items, picked, strict=True)):
                res = self.chain.answerer.answer_features(
                    fs.video,
                    p.raw_kf,
                    s.question,
                    list(s.options),
                    p.frame_indices,
                    p.times,
                    cfg.decoding,
                    "voting",
                )
                answers[i] = {
                    "prediction": int(res.answer_index),
                    "letter_probs": [_r(x) for x in res.option_probs],
                    "step0_token": res.step0_token,
                    "truncated": bool(res.truncated),
                    "votes": res.votes,
                }
        records = []
        for (s, _), p, a in zip(items, picked, answers, strict=True):
            assert a is not None
            pred = a["prediction"]
            if cfg.selector == "oracle" and s.answer is not None and p.extra.get("any_correct"):
                pred = s.answer  # Table 9 upper bound, as SevilaChain.forward
            rec: dict[str, Any] = {
                "qid": s.qid,
                "video": s.video_id,
                "qtype": s.qtype,
                "prediction": pred,
                "answer": s.answer,
                "letter_probs": a["letter_probs"],
                "keyframe_idx": p.frame_indices,
                "keyframe_sec": [_r(t, 4) for t in p.times],
                "keyframe_scores": [None if x is None else _r(x) for x in p.scores],
                "selector": cfg.selector,
                "decoding": cfg.decoding,
                "answerer": cfg.answerer,
                "step0_token": a["step0_token"],
                "truncated": a["truncated"],
            }
            if "votes" in a:
                rec["votes"] = a["votes"]
            records.append(rec)
        return records

    # ------------------------------------------------------------------ QVHighlights
    def predict_qvh(self, items: list[tuple[Sample, FrameSet]]) -> list[dict[str, Any]]:
        """Submission lines (``evaluation.md`` §5.1, §6) for QVHighlights queries."""
        raw = torch.stack([fs.raw for _, fs in items])
        loc_texts = [prompts_for("qvhighlights", s.question, [])[0] for s, _ in items]
        yes, no = self.rt.localizer_logits(raw, loc_texts)
        records = []
        for i, (s, fs) in enumerate(items):
            fr = fs.frames
            n_eff = len(fr.edges) - 1  # padded frames (short video) repeat the last one: drop them
            y, z = yes[i, :n_eff].tolist(), no[i, :n_eff].tolist()
            duration = s.duration or fr.num_video_frames / fr.fps
            windows = frames_to_windows(y, z, fr.edges, fr.fps, duration, self.cfg.span)
            saliency = frames_to_saliency(yes_probabilities(y, z).tolist(), fr.timestamps[:n_eff], duration)
            qid = s.extra.get("qid", s.qid)
            records.append(
                submission_record(qid, s.question, s.video_id, windows, [_r(v, 4) for v in saliency])
            )
        return records

    def predict(self, items: list[tuple[Sample, FrameSet]]) -> list[dict[str, Any]]:
        if not items:
            return []
        return self.predict_qvh(items) if self.cfg.is_qvh else self.predict_mc(items)


def _error_record(sample: Sample, exc: BaseException) -> dict[str, Any]:
    return {
        "qid": sample.extra.get("qid", sample.qid) if sample.dataset == "qvhighlights" else sample.qid,
        "video": sample.video_id,
        "error": str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc),
    }


# ================================================================================ environment record


def _versions() -> dict[str, str | None]:
    import importlib.metadata as md

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in (
        "sevila-tools",
        "torch",
        "transformers",
        "accelerate",
        "av",
        "decord",
        "numpy",
        "safetensors",
    ):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def _run_config(cfg: EvalConfig, runtime: Any, predictor: _Predictor | None, dist: _Dist, cache: Any) -> dict:
    dev = runtime.device
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
    conf: dict[str, Any] = {
        "dataset": cfg.dataset,
        "annotations": str(cfg.annotations),
        "videos": None if cfg.videos is None else str(cfg.videos),
        "video_map": None if cfg.video_map is None else str(cfg.video_map),
        "out": str(cfg.out),
        "selector": "localizer" if cfg.is_qvh else cfg.selector,
        "selector_config": predictor.selector_config() if predictor is not None else {},
        "frames": cfg.num_frames,
        "frames_decoded_per_video": cfg.keyframes
        if (cfg.selector == "uniform" and not cfg.is_qvh)
        else cfg.num_frames,
        "keyframes": None if cfg.is_qvh else cfg.keyframes,
        "decoding": None if cfg.is_qvh else cfg.decoding,
        "answerer": None if cfg.is_qvh else cfg.answerer,
        "span": cfg.span.model_dump() if cfg.is_qvh else None,
        "limit": cfg.limit,
        "batch_size": cfg.batch_size,
        "decoder": cfg.decoder,
        "seed": cfg.seed,
        "model": str(runtime.info.get("model", cfg.model)),
        "checkpoint": runtime.info.get("checkpoint"),
        "checkpoint_arg": cfg.checkpoint,
        "checkpoint_meta": runtime.info.get("checkpoint_meta"),
        "sources": runtime.info.get("sources"),
        "random_weights": bool(getattr(runtime, "random_weights", False)),
        "device": str(dev),
        "gpu": gpu,
        "precision": runtime.precision.describe(),
        "world_size": dist.world,
        "feature_cache": None if cache is None else str(cache.dir),
        "versions": _versions(),
        "platform": platform.platform(),
    }
    return conf


# ================================================================================ progress


def _progress(enabled: bool, console: Any = None) -> Any:
    from sevila_tools.progress import make_progress

    return make_progress(enabled, unit="samples", console=console)


# ================================================================================ metrics


def _score(
    cfg: EvalConfig,
    selected: list[Sample],
    all_samples: list[Sample],
    latest: dict[str, dict],
    config: dict[str, Any],
) -> tuple[dict | None, str | None]:
    from .scorers import score_multiple_choice, score_qvhighlights

    preds = {s.qid: latest[s.qid] for s in selected if s.qid in latest and not is_error(latest[s.qid])}
    if not preds:
        return None, "no predictions to score"
    if cfg.is_qvh:
        if any(s.windows is None for s in selected):
            return None, "annotations carry no relevant_windows (test split?): not scored"
        gt = qvh_ground_truth([s for s in all_samples if s.windows is not None])
        submission = list(preds.values())
        match = cfg.limit is None and len(submission) == len(gt)
        metrics = score_qvhighlights(submission, gt, match_number=match)
        note = None
        if not match:
            why = "--limit" if cfg.limit is not None else "missing/failed queries"
            note = (
                f"scored on the {len(submission)} of {len(gt)} annotated queries that were predicted "
                f"(match_number=False because of {why}; not comparable to a full-split result)"
            )
        return metrics, note
    if any(s.answer is None for s in selected):
        return None, "annotations carry no gold answers (test split?): not scored"
    mc = {q: int(r["prediction"]) for q, r in preds.items()}
    metrics = score_multiple_choice(
        cfg.dataset, mc, selected, allow_missing=len(mc) < len(selected), config=config
    )
    note = None
    if len(mc) < len(selected):
        note = (
            f"{len(selected) - len(mc)} of {len(selected)} questions have no prediction (missing video/error)"
        )
    elif cfg.limit is not None:
        note = f"--limit {cfg.limit}: scored on the first {len(selected)} questions only"
    return metrics, note


# ================================================================================ main entry


def run_eval(
    config: EvalConfig | dict[str, Any],
    runtime: Any = None,
    progress: bool = True,
    console: Any = None,
    on_status: Callable[[str], None] | None = None,
) -> EvalSummary:
    """Evaluate a dataset end to end: pre-flight, batched predictions streamed to JSONL, merge, metrics.

    Args:
        config: :class:`EvalConfig` (or a dict of its fields).
        runtime: an already loaded :class:`~sevila_tools.runtime.SevilaRuntime`; loaded from
            ``config.model`` / ``config.checkpoint`` / ``config.device`` after the pre-flight when omitted.
        progress: show a rich progress bar on stderr (main process only).
        console: rich console for the progress bar and notes (default: a stderr console).
        on_status: called with one-line notes (pre-flight warnings, resume counts, errors) to show.

    Returns:
        :class:`EvalSummary`; metrics are filled on the main process only.

    Raises:
        InputError: bad annotations/options, output exists without ``resume``/``overwrite``, a resumed file
            written with other settings.
        VideoError: missing/unreadable videos without ``skip_missing``.
    """
    cfg = config if isinstance(config, EvalConfig) else EvalConfig.model_validate(config)
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's RNG
        torch.manual_seed(cfg.seed)
        return _run_eval(cfg, runtime, progress, console, on_status)


def _run_eval(
    cfg: EvalConfig,
    runtime: Any,
    progress: bool,
    console: Any,
    on_status: Callable[[str], None] | None,
) -> EvalSummary:
    say = on_status or (lambda msg: log.info("%s", msg))
    t_start = time.perf_counter()

    # ---------------------------------------------------------------- annotations + pre-flight (no model yet)
    all_samples = load_annotations(cfg.dataset, cfg.annotations, cfg.videos, cfg.video_map, cfg.video_ext)
    dup = [q for q, c in Counter(s.qid for s in all_samples).items() if c > 1]
    if dup:
        raise InputError(
            f"{len(dup)} duplicate question ids in {cfg.annotations} (first: {', '.join(dup[:3])})"
        )
    order = {s.qid: i for i, s in enumerate(all_samples)}
    selected = all_samples[: cfg.limit] if cfg.limit else list(all_samples)
    if cfg.videos is None:
        raise InputError("--videos (the folder holding the videos) is required")
    report = preflight(selected, check_readable=False)
    unreadable = [
        v
        for v in dict.fromkeys(s.video for s in report.ok)
        if not os.access(v, os.R_OK) or not os.path.isfile(v)
    ]
    bad = list(report.missing) + unreadable
    if bad:
        n_vid = len({s.video for s in selected})
        msg = f"{len(report.missing)} of {n_vid} videos missing"
        if report.missing:
            msg += f" (first: {', '.join(report.missing[:3])})"
        if unreadable:
            msg += f"; {len(unreadable)} not readable files (first: {', '.join(unreadable[:3])})"
        if not cfg.skip_missing:
            raise VideoError(f"{msg}; pass --skip-missing to evaluate the others")
        say(f"warning: {msg}; skipping their questions (--skip-missing)")
    bad_set = set(bad)
    runnable = [s for s in selected if s.video not in bad_set]

    # ---------------------------------------------------------------- output state
    dist = _distributed(cfg.device)
    out = cfg.out
    if cfg.is_qvh and cfg.selector not in ("localizer",):
        raise InputError("qvhighlights moment retrieval uses the Localizer (leave --selector at localizer)")
    existing: list[dict[str, Any]] = []
    leftovers = [p for p in [out, *shard_files(out)] if p.exists() and p.stat().st_size > 0]
    if cfg.is_qvh and errors_file(out).exists():
        leftovers.append(errors_file(out))
    if cfg.resume:
        existing = _existing_records(out, cfg.is_qvh)
        if not cfg.is_qvh:
            for rec in existing:
                if is_error(rec):
                    continue
                for fld, want in (
                    ("selector", cfg.selector),
                    ("decoding", cfg.decoding),
                    ("answerer", cfg.answerer),
                ):
                    if fld in rec and rec[fld] != want:
                        raise InputError(
                            f"{out} was written with {fld}={rec[fld]!r}, this run uses {want!r}; "
                            "use another --out or the same settings to resume"
                        )
    elif leftovers and not cfg.overwrite:
        raise InputError(f"{out} already exists; pass --resume to continue it or --overwrite to replace it")
    latest_before = _latest(existing)
    done = {q for q, r in latest_before.items() if not (cfg.retry_errors and is_error(r))}
    todo = [s for s in runnable if s.qid not in done]
    resumed = len(runnable) - len(todo)
    if cfg.resume and dist.main:
        say(f"resume: {resumed} of {len(runnable)} samples already in {out}")

    n = cfg.num_frames if (cfg.is_qvh or cfg.selector != "uniform") else cfg.keyframes
    # canonical batches over ALL runnable samples (grouped by video), so that a resumed or sharded run feeds the
    # model exactly the batches an uninterrupted single-process run does (batch composition changes the last bits)
    batches = plan_batches(runnable, n, cfg.batch_size)
    active = [b for b in batches if any(s.qid not in done for s in b)]
    mine = shard_batches(active, dist.rank, dist.world)
    n_pending = sum(1 for b in mine for s in b if s.qid not in done)

    if cfg.overwrite and dist.main:
        for p in leftovers:
            p.unlink()
    dist.barrier()  # every rank has read the old files before anyone writes

    # ---------------------------------------------------------------- model
    t_load = time.perf_counter()
    if runtime is None:
        from sevila_tools.loading import load_runtime

        runtime = load_runtime(
            cfg.model,
            cfg.checkpoint,
            device=_rank_device(cfg.device, dist),
            trust_checkpoint=cfg.trust_checkpoint,
        )
    load_s = time.perf_counter() - t_load
    cache = None
    if cfg.cache:
        from sevila_tools.cache import DiskFeatureCache

        cache = DiskFeatureCache(cfg.cache_dir, device=runtime.device)
    predictor = _Predictor(runtime, cfg)
    run_conf = _run_config(cfg, runtime, predictor, dist, cache)

    # ---------------------------------------------------------------- predict
    t_run = time.perf_counter()
    if dist.world > 1:
        stream_path = out.with_name(out.name + SHARD_SUFFIX.format(rank=dist.rank))
        fresh = not stream_path.exists()
    else:
        stream_path = out
        fresh = not out.exists()
    processed = 0
    errors_run: list[dict[str, Any]] = []
    failure: BaseException | None = None
    vit_id = ""
    if cache is not None:
        from sevila_tools.cache import vit_fingerprint

        vit_id = vit_fingerprint(runtime)
    source = _FrameSource(runtime, cfg, cache, vit_id, n)
    specs = [_spec(s, n) for b in mine for s in b]
    remaining = Counter(specs)
    order_specs = list(dict.fromkeys(specs))
    spec_pos = {sp: i for i, sp in enumerate(order_specs)}
    loaded: dict[tuple, FrameSet | BaseException] = {}
    writer = _Writer(stream_path, fresh)
    bar = _progress(progress and dist.main, console)
    label = f"eval {cfg.dataset}" + (f" [rank 0 of {dist.world}]" if dist.world > 1 else "")
    try:
        with bar:
            task = bar.add_task(label, total=n_pending)
            for batch in mine:
                bspecs = [_spec(s, n) for s in batch]
                last = max(spec_pos[sp] for sp in bspecs)
                source.prefetch(order_specs[spec_pos[bspecs[0]] : last + 1 + cfg.prefetch])
                items: list[tuple[Sample, FrameSet]] = []
                slots: list[dict[str, Any] | None] = []
                for s, sp in zip(batch, bspecs, strict=True):
                    if sp not in loaded:
                        try:
                            loaded[sp] = source.get(sp)
                        except (VideoError, InputError) as exc:
                            loaded[sp] = exc
                    got = loaded[sp]
                    if isinstance(got, BaseException):
                        slots.append(_error_record(s, got))
                    else:
                        items.append((s, got))
                        slots.append(None)
                preds = iter(predictor.predict(items))
                records = []
                for s, slot in zip(batch, slots, strict=True):
                    rec = next(preds) if slot is None else slot
                    if s.qid in done:  # computed only to keep the batch identical to an uninterrupted run
                        continue
                    if is_error(rec):
                        errors_run.append(rec)
                        if len(errors_run) <= 3:
                            say(f"error: {s.qid}: {rec['error']}")
                    records.append(rec)
                writer.write_batch(records)
                for sp in bspecs:
                    remaining[sp] -= 1
                    if remaining[sp] == 0:
                        loaded.pop(sp, None)
                processed += len(records)
                bar.update(task, advance=len(records))
    except Exception as exc:  # noqa: BLE001 - re-raised after the other ranks were told
        failure = exc
        if dist.world <= 1:
            raise
    finally:
        writer.close()
        source.close()
    run_s = time.perf_counter() - t_run

    # ---------------------------------------------------------------- merge + score
    stats = {
        "processed": processed,
        "run_s": run_s,
        "errors": errors_run[:5],
        "n_errors": len(errors_run),
        "cache": None if cache is None else cache.stats(),
        "decoded": source.decoded,
        "failure": None if failure is None else f"{type(failure).__name__}: {failure}",
    }
    dist.barrier()
    gathered = dist.gather(stats)
    failed = [(r, g["failure"]) for r, g in enumerate(gathered) if g["failure"]]
    latest: dict[str, dict[str, Any]] = {}
    err_path = None
    if dist.main:
        latest, err_path = compact(out, order, cfg.is_qvh)
    dist.barrier()
    if failure is not None:
        raise failure
    if failed:
        r, msg = failed[0]
        raise SevilaError(f"rank {r} failed: {msg}")

    total_processed = sum(g["processed"] for g in gathered)
    slowest = max(g["run_s"] for g in gathered)
    n_err_run = sum(g["n_errors"] for g in gathered)
    first_errors = [e for g in gathered for e in g["errors"]][:5]
    cache_info: dict[str, Any] = {"enabled": cache is not None}
    if cache is not None:
        cache_info["dir"] = str(cache.dir)
        for k in ("hits", "misses", "writes", "errors"):
            cache_info[k] = sum((g["cache"] or {}).get(k, 0) for g in gathered)
    cache_info["decoded_videos"] = sum(g["decoded"] for g in gathered)

    summary = EvalSummary(
        dataset=cfg.dataset,
        out=str(out),
        samples=len(selected),
        runnable=len(runnable),
        skipped_missing=len(selected) - len(runnable),
        missing_videos=bad[:5],
        resumed=resumed,
        processed=total_processed,
        errors_this_run=n_err_run,
        first_errors=[{"qid": str(e["qid"]), "error": str(e["error"])} for e in first_errors],
        load_s=round(load_s, 3),
        samples_per_s=round(total_processed / slowest, 4) if total_processed and slowest else None,
        batch_size=cfg.batch_size,
        world_size=dist.world,
        cache=cache_info,
        config=run_conf,
        notice="RANDOM WEIGHTS (tiny-random preset): metrics are meaningless"
        if run_conf["random_weights"]
        else None,
        is_main_process=dist.main,
    )
    if dist.main:
        sel_ids = {s.qid for s in selected}
        summary.predictions = sum(1 for q, r in latest.items() if q in sel_ids and not is_error(r))
        summary.errors = sum(1 for q, r in latest.items() if q in sel_ids and is_error(r))
        summary.errors_file = str(err_path) if err_path is not None and err_path.exists() else None
        summary.metrics, summary.metrics_note = _score(cfg, selected, all_samples, latest, run_conf)
    summary.elapsed_s = round(time.perf_counter() - t_start, 3)
    return summary


__all__ = [
    "DEFAULT_FRAMES",
    "EvalConfig",
    "EvalSummary",
    "QVH_FRAMES",
    "compact",
    "errors_file",
    "group_by_video",
    "is_error",
    "read_records",
    "run_eval",
    "shard_files",
    "plan_batches",
    "shard_batches",
]
