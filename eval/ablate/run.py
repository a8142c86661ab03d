"""``sevila ablate``: every (selector, frames -> keyframes, answerer) setting through ``sevila eval``, one table."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sevila_tools.errors import InputError, VideoError
from sevila_tools.files import atomic_write_text
from sevila_tools.schemas import weights_notice
from sevila_tools.selectors import get_selector_class, options_for

from ..datasets import preflight
from ..records import is_error, latest, read_records
from ..runner import LOG_NAME, SUMMARY_NAME, EvalConfig, EvalRun, RunOptions, run_eval
from ..session import RunLog, score_run
from .config import AblationConfig, Setting, default_selectors, plan_settings
from .report import AblationResult, AblationRow, render_csv, render_markdown, render_png

log = logging.getLogger("sevila_tools.eval.ablate")

RUNS_DIR = "runs"


class AblationRun:
    """One ablation: ``load`` -> ``plan`` -> ``check_videos`` -> ``prepare_output`` -> ``run_settings`` ->
    ``finish``. Settings share the runtime, the disk feature store and the selectors' model/feature memos."""

    def __init__(self, cfg: AblationConfig, runtime: Any, progress: bool, console: Any,
                 say: Callable[[str], None], on_status: Callable[[str], None] | None) -> None:
        self.cfg, self.runtime, self.progress, self.console = cfg, runtime, progress, console
        self.say, self.on_status = say, on_status
        self.t0 = time.perf_counter()
        self.rows: list[AblationRow] = []
        self.vit = {"hits": 0, "misses": 0, "writes": 0, "errors": 0, "decoded_videos": 0}
        self.vit_dir: str | None = None
        self.n_run = self.n_resumed = 0

    @property
    def random_preset(self) -> bool:
        from sevila_tools.loading import preset_has_random_weights

        return self.runtime.random_weights if self.runtime is not None else preset_has_random_weights(self.cfg.model)

    # ---------------------------------------------------------------- 1. annotations, videos
    def load(self) -> None:
        cfg = self.cfg
        if cfg.videos is None:
            raise InputError("--videos (the folder holding the videos) is required")
        self.spec = EvalConfig(dataset=cfg.dataset, annotations=cfg.annotations, out=cfg.out).spec
        self.all_samples = self.spec.load(cfg.annotations, cfg.videos, cfg.video_map, cfg.video_ext)
        self.selected = self.all_samples[: cfg.limit] if cfg.limit else list(self.all_samples)
        if not self.selected:
            raise InputError(f"no questions in {cfg.annotations}")
        self.has_gold = all(s.answer is not None for s in self.selected)
        report = preflight(self.selected, check_readable=True)
        bad = list(report.missing) + list(report.unreadable)
        msg = report.summary(self.spec.missing_videos_hint(cfg.video_map))
        if bad and not cfg.skip_missing:
            raise VideoError(f"{msg}; pass --skip-missing to evaluate the others")
        if bad:
            self.say(f"warning: {msg}; skipping their questions (--skip-missing)")
        self.runnable = [s for s in self.selected if s.video not in set(bad)]

    # ---------------------------------------------------------------- 2. selectors and settings
    def plan(self) -> None:
        cfg, flat = self.cfg, self.cfg.flat_options()
        self.skipped: dict[str, str] = {}
        if cfg.selectors is None:
            self.selectors, self.skipped = default_selectors(self.has_gold, flat, self.random_preset)
        else:
            self.selectors = list(cfg.selectors)
            for name in self.selectors:
                cls = get_selector_class(name)  # one-line error for an unknown name
                if cls.needs_gold and not self.has_gold:
                    raise InputError(f"the {name} selector needs gold answers, and the annotations have none")
                why = cls.unavailable_reason(options_for(name, flat), self.random_preset)
                if why:
                    raise InputError(f"the {name} selector cannot run: {why}")
        self.settings = plan_settings(self.selectors, cfg.grid, cfg.answerers, flat)

    def check_videos(self) -> None:
        segments = list(dict.fromkeys((s.video, s.start, s.end) for s in self.runnable))
        flat = self.cfg.flat_options()
        self.video_checks = {}
        for name in self.selectors:
            record = get_selector_class(name).check_videos(segments, options_for(name, flat), self.cfg.decoder)
            if record is not None:
                self.video_checks[name] = record

    # ---------------------------------------------------------------- 3. output folder
    def run_dir(self, st: Setting) -> Path:
        return self.cfg.out / RUNS_DIR / st.id

    def prepare_output(self) -> None:
        out = self.cfg.out
        if out.exists() and not out.is_dir():
            raise InputError(f"--out must be a folder: {out} is a file")
        existing = [st for st in self.settings if (self.run_dir(st) / "predictions.jsonl").exists()]
        if existing and not (self.cfg.resume or self.cfg.overwrite):
            raise InputError(f"{out} already holds predictions for {len(existing)} of these settings; pass --resume "
                             "to continue or --overwrite to replace them")
        (out / RUNS_DIR).mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- 4. settings
    def eval_config(self, st: Setting) -> EvalConfig:
        """The ``sevila eval`` run of one setting: the ablation's run options plus the setting."""
        cfg = self.cfg
        run = self.run_dir(st)
        shared = cfg.model_dump(include=set(RunOptions.model_fields))
        shared.update(out=run, resume=cfg.resume and (run / "predictions.jsonl").exists())
        return EvalConfig(
            **shared, selector=st.selector, selector_options=options_for(st.selector, cfg.flat_options()),
            frames=st.frames, keyframes=st.keyframes, answerer=st.answerer,
        )

    def _finished(self, ecfg: EvalConfig) -> dict[str, Any] | None:
        """The saved summary of a setting that needs no more work (after checking its settings match)."""
        if not self.cfg.resume or not (ecfg.out / SUMMARY_NAME).is_file():
            return None
        EvalRun(ecfg, None, False, None, self.say).check_settings(skip=("model", "checkpoint"))
        by_qid = latest(read_records(ecfg.predictions_path))
        ids = [s.qid for s in self.runnable]
        if any(q not in by_qid or (self.cfg.retry_errors and is_error(by_qid[q])) for q in ids):
            return None
        return json.loads((ecfg.out / SUMMARY_NAME).read_text())

    def _runtime(self) -> Any:
        if self.runtime is None:
            from sevila_tools.loading import load_runtime

            self.say(f"loading {self.cfg.model} ...")
            self.runtime = load_runtime(self.cfg.model, self.cfg.checkpoint, device=self.cfg.device,
                                        trust_checkpoint=self.cfg.trust_checkpoint)
        return self.runtime

    def run_settings(self) -> None:
        for i, st in enumerate(self.settings, 1):
            ecfg = self.eval_config(st)
            saved = self._finished(ecfg)
            if saved is not None:
                self.n_resumed += 1
                self.say(f"[{i}/{len(self.settings)}] {st.label}: finished earlier ({ecfg.out}), not run again")
                self._add_row(st, ecfg, saved, "resumed")
                continue
            self.say(f"[{i}/{len(self.settings)}] {st.label}")
            summary = run_eval(ecfg, runtime=self._runtime(), progress=self.progress, console=self.console,
                               on_status=self.on_status)
            self.n_run += 1
            for key in self.vit:
                self.vit[key] += int(summary.cache.get(key, 0) or 0)
            self.vit_dir = summary.cache.get("dir", self.vit_dir)
            self._add_row(st, ecfg, summary.model_dump(mode="json"), "run")

    def _add_row(self, st: Setting, ecfg: EvalConfig, summary: dict[str, Any], status: Any) -> None:
        by_qid = latest(read_records(ecfg.predictions_path))
        metrics, note = score_run(ecfg, self.selected, self.all_samples, by_qid)
        if not self.has_gold:
            metrics, note = None, "no gold answers: not scored"
        ids = {s.qid for s in self.selected}
        own = st.frames != int(st.grid_entries[0].split(":")[0])
        conf = {**summary.get("config", {}), "selector_options": ecfg.selector_options,
                "grid_entries": st.grid_entries}
        if own:
            conf["frames_rule"] = f"{st.selector} decodes its own {st.frames} frames; the grid's frame count is unused"
        if st.selector in self.video_checks:
            conf["video_check"] = self.video_checks[st.selector]
        self.rows.append(AblationRow(
            setting=st.id, selector=st.selector, frames=st.frames, keyframes=st.keyframes, answerer=st.answerer,
            grid_entries=st.grid_entries, own_rule=own, status=status,
            display=dict(metrics["display"]) if metrics else {},
            headline=None if metrics is None else metrics["headline"]["value"],
            n=0 if metrics is None else int(metrics["n"]), n_total=len(self.selected),
            predictions=sum(1 for q, r in by_qid.items() if q in ids and not is_error(r)),
            errors=sum(1 for q, r in by_qid.items() if q in ids and is_error(r)), metrics=metrics, note=note,
            predictions_file=str(ecfg.predictions_path), summary_file=str(ecfg.out / SUMMARY_NAME),
            elapsed_s=summary.get("elapsed_s"), config=conf,
        ))

    # ---------------------------------------------------------------- 5. notes and files
    def notes(self) -> list[str]:
        """The numbered notes under the table: each fact once (settings that share a note are named together)."""
        notes: list[str] = []
        own = dict.fromkeys(r.selector for r in self.rows if r.own_rule)
        if own:
            rules = "; ".join(f"{name}: {get_selector_class(name).frames_rule}" for name in own)
            notes.append(f"¹ these selectors decide how many frames to read ({rules}), so grid entries that read "
                         "the same frames share one row.")
        for name in dict.fromkeys(r.selector for r in self.rows):
            cls = get_selector_class(name)
            if cls.needs_gold:
                notes.append(f"{name} reads the gold answers. {cls.description}")
        for name, record in self.video_checks.items():
            notes.append(f"{name}: {record.get('note', json.dumps(record, default=str))}")
        notes += [f"selector {name} not run: {why}." for name, why in self.skipped.items()]
        if self.cfg.limit is not None:
            notes.append(f"--limit {self.cfg.limit}: scored on the first {len(self.selected)} questions only.")
        if not self.has_gold:
            notes.append("the annotations carry no gold answers: predictions only, nothing scored.")
        skipped = len(self.selected) - len(self.runnable)
        if skipped:
            notes.append(f"{skipped} of {len(self.selected)} questions skipped (missing videos): not scored.")
        notes += self._row_notes(skipped)
        if not self.cfg.cache:
            notes.append("feature cache off (--no-cache): ViT features were recomputed for every setting.")
        return notes

    def _row_notes(self, skipped: int) -> list[str]:
        """Notes of single settings, grouped by text; those that only repeat a note above are left out."""
        if not self.has_gold:
            return []
        groups: dict[str, list[str]] = {}
        for r in self.rows:
            if not r.note:
                continue
            only_skipped = "have no prediction" in r.note and r.n + skipped == r.n_total  # = the skipped videos
            if not (only_skipped or r.note.startswith("--limit ")):
                groups.setdefault(r.note, []).append(r.setting)
        everyone = len(self.rows) > 1
        return [f"{'every setting' if everyone and len(ids) == len(self.rows) else ', '.join(ids)}: {note}."
                for note, ids in groups.items()]

    def finish(self) -> AblationResult:
        from sevila_tools.selectors.memo import selector_memo_stats

        flags = [bool(r.config.get("random_weights")) for r in self.rows]
        random_weights = any(flags) if flags else None
        out = self.cfg.out
        result = AblationResult(
            dataset=self.cfg.dataset, out=str(out), columns=list(self.spec.columns),
            headline_metric=self.spec.headline_column, rows=self.rows, selectors=self.selectors,
            skipped_selectors=self.skipped, grid=[f"{n}:{k}" for n, k in self.cfg.grid],
            answerers=list(self.cfg.answerers), questions=len(self.selected), runnable=len(self.runnable),
            settings_run=self.n_run, settings_resumed=self.n_resumed,
            vit_cache={"enabled": self.cfg.cache, "dir": self.vit_dir, **self.vit},
            selector_memo=selector_memo_stats(), video_checks=self.video_checks, notes=self.notes(),
            random_weights=random_weights,
            notice=weights_notice(random_weights),
            config=self.cfg.model_dump(mode="json"),
        )
        files = {k: out / f"results.{ext}" for k, ext in (("markdown", "md"), ("csv", "csv"), ("json", "json"),
                                                          ("png", "png"))}
        result.files = {k: str(v) for k, v in files.items()}
        atomic_write_text(files["markdown"], render_markdown(result))
        atomic_write_text(files["csv"], render_csv(result))
        render_png(result, files["png"])
        result.elapsed_s = round(time.perf_counter() - self.t0, 3)
        atomic_write_text(files["json"], json.dumps(result.model_dump(mode="json"), indent=2, default=str) + "\n")
        return result


def run_ablation(
    config: AblationConfig | dict[str, Any],
    runtime: Any = None,
    progress: bool = True,
    console: Any = None,
    on_status: Callable[[str], None] | None = None,
) -> AblationResult:
    """Run every (selector, frames -> keyframes, answerer) setting and write the results table.

    A fully resumed ablation loads no model. Raises :class:`InputError` for bad options, selectors that cannot
    run, an existing output without ``resume``/``overwrite`` or a resumed setting written with other settings;
    :class:`VideoError` for missing/unreadable videos without ``skip_missing``."""
    cfg = config if isinstance(config, AblationConfig) else AblationConfig.model_validate(config)
    runlog, status = RunLog(cfg.out / LOG_NAME), on_status or (lambda msg: log.info("%s", msg))

    def say(msg: str) -> None:
        status(msg)
        runlog.write(msg)

    run = AblationRun(cfg, runtime, progress, console, say, on_status)
    start = f"ablate {cfg.dataset}: {cfg.annotations} (videos {cfg.videos}), model {cfg.model}" + (
        ", resume" if cfg.resume else "")
    with runlog.capture(start, lambda: f"interrupted after {run.n_run + run.n_resumed} of "
                        f"{len(getattr(run, 'settings', []))} settings: rerun with --resume to continue"):
        for step in (run.load, run.plan, run.check_videos, run.prepare_output, run.run_settings):
            step()
        result = run.finish()
        runlog.write(f"finished in {result.elapsed_s:.1f} s: {result.settings_run} settings run, "
                     f"{result.settings_resumed} resumed; results in {result.files['markdown']}")
        return result
