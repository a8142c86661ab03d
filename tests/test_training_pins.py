"""Two pins the learning test cannot give: the accumulation scale of the trainer's step gradient and the exact
free-text prompt."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.register_assert_rewrite("training_support")
from training_support import OPTIONS, QUESTION, fresh_runtime, make_data, samples_of  # noqa: E402

from sevila_tools.prompts import localizer_prompt, open_question_prompt  # noqa: E402
from sevila_tools.training import Trainer, load_item, read_labels, resolve_config, step_plan  # noqa: E402
from sevila_tools.training.data import DrawSpec  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run faster on one thread


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The training tests' scene videos and annotations (``training_support.make_data``)."""
    return make_data(tmp_path_factory.mktemp("train"))


def test_first_step_gradient_is_loss_scale_times_the_summed_micro_batches(data, tmp_path, monkeypatch):
    """One process reaching a global batch of 4 by accumulating 4 micro-batches of 1, where the reference run
    had 2 processes (accumulation 2 each): the official step gradient is 2 x the mean micro-batch gradient, so
    each micro-batch loss is scaled by 2 / 4 = 0.5 (neither 1, the sum, nor 0.25, the mean)."""
    cfg = resolve_config("refine", "nextqa", overrides=dict(
        epochs=1, batch_size=1, global_batch=4, reference_processes=2, init="checkpoint", augment=False,
        frozen_dropout=False, dropout=False, warmup_steps=0, lr=1e-3))
    captured: dict[str, torch.Tensor] = {}
    step = Trainer._optimizer_step

    def capture(self: Trainer) -> None:
        if not captured:
            captured.update({n: p.grad.detach().clone() for n, p in self.runtime.model.named_parameters()
                             if p.grad is not None})
        step(self)

    monkeypatch.setattr(Trainer, "_optimizer_step", capture)
    trainer = Trainer(fresh_runtime(), samples_of(data), cfg, tmp_path / "g", labels=data / "labels.jsonl",
                      progress=False)
    trainer.train()
    assert (trainer.layout.accum, trainer.layout.loss_scale) == (4, 0.5)

    # independent: each micro-batch's loss from the runtime, back-propagated alone from the same start
    rt = fresh_runtime()
    rt.model.freeze(("localizer",))
    samples, labels = samples_of(data), read_labels(data / "labels.jsonl")
    summed: dict[str, torch.Tensor] = {}
    micro = step_plan(len(samples), trainer.layout, cfg.seed, 0)[0]
    assert [len(m) for m in micro] == [1, 1, 1, 1]
    for (p,) in micro:
        item = load_item(samples[p], p, 0, DrawSpec(cfg.num_frames, cfg.seed, augment=False), labels)
        raw = rt.vit(item.frames.frames)[None]
        rt.model.zero_grad(set_to_none=True)
        rt.localizer_loss(raw, [localizer_prompt(QUESTION, OPTIONS)], list(item.labels)).backward()
        for n, prm in rt.model.named_parameters():
            if prm.grad is not None:
                summed[n] = summed.get(n, 0) + prm.grad
    assert captured.keys() == summed.keys() and len(captured) > 10
    assert all(n.split(".")[0].endswith("_loc") for n in captured)
    for n, g in captured.items():
        torch.testing.assert_close(g, 0.5 * summed[n], rtol=1e-4, atol=1e-7)


def test_open_question_prompt_is_pinned():
    """The free-text template (docs/method.md, "Free-text answers"): BLIP-2's "Question: {} Answer:"."""
    assert open_question_prompt("q?") == "Question: q? Answer:"
    assert open_question_prompt("what is the man holding?") == "Question: what is the man holding? Answer:"
