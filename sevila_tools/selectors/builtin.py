"""Selectors that need only the SeViLA runtime: uniform, random, localizer (SeViLA) and oracle."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from sevila_tools.errors import InputError
from sevila_tools.prompts import prompts_for
from sevila_tools.runtime import SevilaRuntime
from sevila_tools.selectors.base import (
    Selection,
    Selector,
    SelectorInput,
    check_keyframes,
    register,
    selection_from_positions,
    topk_sorted,
)
from sevila_tools.video import sample_indices


@register
class UniformSelector(Selector):
    """k frames by SeViLA's midpoint rule with n = k over the window (the paper's uniform baseline).

    These are generally *not* among 32 candidates (``docs/method.md``)."""

    name: ClassVar[str] = "uniform"
    frames_rule: ClassVar[str] = "k frames by the midpoint rule with n = k"
    description: ClassVar[str] = (
        "k frames evenly spread over the video (segment midpoints); ignores the question."
    )
    rank: ClassVar[int] = 0

    @classmethod
    def num_candidates(cls, num_frames: int, num_keyframes: int) -> int:
        """Only the k keyframes need decoding: they are the candidates of the n = k rule."""
        return num_keyframes

    def select(self, inp: SelectorInput, k: int) -> Selection:
        cand = inp.candidates
        start, end = inp.start, inp.end
        indices, _, padded = sample_indices(cand.num_video_frames, k, cand.fps, start=start, end=end)
        pos = {idx: p for p, idx in enumerate(cand.indices)}
        return Selection(
            selector=self.name,
            config={"rule": "midpoint, n=k"},
            candidate_frame_indices=list(cand.indices),
            candidate_times=list(cand.timestamps),
            candidate_scores=None,
            frame_indices=indices,
            times=[i / cand.fps for i in indices],
            candidate_positions=[pos.get(i) for i in indices],
            scores=[None] * len(indices),
            extra={"padded": padded},
        )


@register
class RandomSelector(Selector):
    """k random candidates (seeded), sorted by time."""

    name: ClassVar[str] = "random"
    description: ClassVar[str] = "k random candidate frames (seeded); a sanity baseline."
    rank: ClassVar[int] = 10

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        seed: int = Field(default=0, description="Seed of the draw (mixed with the question).")

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def config(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def select(self, inp: SelectorInput, k: int) -> Selection:
        n = len(inp.candidates.indices)
        check_keyframes(k, n)
        rng = np.random.default_rng([self.seed, *[ord(c) for c in inp.question[:32]]])
        positions = sorted(rng.choice(n, size=k, replace=False).tolist())
        return selection_from_positions(self.name, inp, positions, None, self.config())


def _raw(runtime: SevilaRuntime, inp: SelectorInput) -> torch.Tensor:
    if inp.raw_features is not None:
        return inp.raw_features.to(runtime.device)
    return runtime.vit(inp.candidates.frames)


def _texts(inp: SelectorInput) -> tuple[str, str]:
    """The prompt texts the pipeline computed (the default style when a selector is called directly)."""
    loc, qa = prompts_for(None, inp.question, inp.options)
    return inp.loc_text or loc, inp.qa_text or qa


@register
class LocalizerSelector(Selector):
    """SeViLA's Localizer: top-k candidates by the raw first-step 'yes' logit, then temporal order."""

    name: ClassVar[str] = "localizer"
    description: ClassVar[str] = (
        "SeViLA Localizer: frames whose content answers the question (language-aware)."
    )
    scores_candidates: ClassVar[bool] = True
    rank: ClassVar[int] = 50

    def __init__(self, runtime: SevilaRuntime) -> None:
        self.runtime = runtime

    @classmethod
    def create(cls, runtime: Any, options: BaseModel) -> LocalizerSelector:
        return cls(runtime)

    def config(self) -> dict[str, Any]:
        return {"score": "raw yes logit at decoder step 0"}

    def select_many(self, inputs: list[SelectorInput], k: int) -> list[Selection]:
        """Select for several questions in one batched Localizer call (all frames of all questions together).
        Inputs must have the same number of candidates."""
        texts = [_texts(inp)[0] for inp in inputs]
        raw = torch.stack([_raw(self.runtime, inp) for inp in inputs])
        yes, no = self.runtime.localizer_logits(raw, texts)
        probs = torch.stack([no, yes], -1).softmax(-1)[..., 1]
        out = []
        for inp, text, y, p in zip(inputs, texts, yes.tolist(), probs.tolist(), strict=True):
            positions = topk_sorted(y, k)
            out.append(
                selection_from_positions(
                    self.name, inp, positions, y, self.config(), extra={"yes_prob": p, "prompt": text}
                )
            )
        return out

    def select(self, inp: SelectorInput, k: int) -> Selection:
        return self.select_many([inp], k)[0]


#: the paper's Table 9 oracle and the official ``frameqa`` task: 4 uniformly sampled frames, each answered alone
PAPER_ORACLE_FRAMES = 4


@register
class OracleSelector(Selector):
    """Upper bound of the paper's Table 9: the single-frame Answerer runs on each of 4 uniformly sampled frames
    (the paper's setting and the official ``frameqa`` task; ``oracle_frames`` changes the count, 0 takes the
    run's candidates). Keyframes are the candidates with the highest single-frame probability of the gold
    option; the question counts as right only if some single frame alone gives the gold answer
    (``docs/method.md``, "Oracle")."""

    name: ClassVar[str] = "oracle"
    frames_rule: ClassVar[str] = "4 uniform frames, the paper's Table 9 (option oracle_frames)"
    description: ClassVar[str] = (
        "Upper bound, not a method: right if one of 4 uniform frames alone gives the gold answer (paper Table 9)."
    )
    needs_gold: ClassVar[bool] = True
    scores_candidates: ClassVar[bool] = True
    rank: ClassVar[int] = 60

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        oracle_frames: int = Field(
            default=PAPER_ORACLE_FRAMES, ge=0, le=256,
            description="Uniform frames the oracle answers one at a time: 4 as in the paper's Table 9 "
            "(official frameqa); 0 = the run's --frames candidates.",
        )

    def __init__(self, runtime: SevilaRuntime, oracle_frames: int = PAPER_ORACLE_FRAMES) -> None:
        self.runtime, self.oracle_frames = runtime, oracle_frames
        # callers hold instances: an instance decodes as many frames as its own option says
        self.num_candidates = functools.partial(OracleSelector.num_candidates, oracle_frames=oracle_frames)  # type: ignore[method-assign]

    @classmethod
    def create(cls, runtime: Any, options: BaseModel) -> OracleSelector:
        return cls(runtime, **options.model_dump())

    @classmethod
    def num_candidates(cls, num_frames: int, num_keyframes: int, oracle_frames: int = PAPER_ORACLE_FRAMES) -> int:
        """``oracle_frames`` uniform frames (the paper's 4), or the run's ``num_frames`` when it is 0."""
        return oracle_frames or num_frames

    def config(self) -> dict[str, Any]:
        frames = f"{self.oracle_frames} uniform frames" if self.oracle_frames else "the run's candidate frames"
        return {"rule": "right iff some single frame alone gives the gold answer (faithful decoding)",
                "frames": frames + (" (paper Table 9)" if self.oracle_frames == PAPER_ORACLE_FRAMES else "")}

    def select(self, inp: SelectorInput, k: int) -> Selection:
        if inp.answer is None:
            raise InputError("the oracle selector needs the gold answer (only usable in evaluation)")
        if len(inp.options) < 2:
            raise InputError("the oracle selector needs multiple-choice options")
        out = self.runtime.frame_answers(
            _raw(self.runtime, inp)[None], [_texts(inp)[1]], len(inp.options), "faithful"
        )
        preds = out.predictions
        gold_prob = out.probs[:, inp.answer].tolist()
        positions = topk_sorted(gold_prob, min(k, len(gold_prob)))  # the answer never depends on k
        best = sorted(range(len(gold_prob)), key=lambda i: (-gold_prob[i], i))[0]
        extra = {
            "per_frame_predictions": preds,
            "any_correct": any(p == inp.answer for p in preds),
            "best_frame_prediction": preds[best],
        }
        return selection_from_positions(self.name, inp, positions, gold_prob, self.config(), extra=extra)

    def finalize_answer(self, inp: SelectorInput, selection: Selection, answer: Any) -> Any:
        """The paper's rule: gold when some single candidate is right, else the best single frame's (wrong)
        answer, whatever the multi-frame Answerer said."""
        right = bool(selection.extra.get("any_correct"))
        index = inp.answer if right else int(selection.extra["best_frame_prediction"])
        return dataclasses.replace(answer, index=index, strategy=self.name)


__all__ = ["LocalizerSelector", "OracleSelector", "RandomSelector", "UniformSelector"]
