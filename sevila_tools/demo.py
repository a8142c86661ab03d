"""``sevila demo`` (the ``make demo`` job): one NeedleQA clip generated on the spot, SeViLA's forward chain on its
question, a plot, and whether the answer is right."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from sevila_tools.schemas import ForwardResult, ModelOptions
from sevila_tools.synth.world import VideoPlan

#: seed of the demo clip: a NeedleQA video no model was trained or evaluated on
DEMO_SEED = 4242
DEMO_MODEL = "tiny-trained"


class DemoConfig(ModelOptions):
    """Where the demo writes its clip and plot, and which model it runs (the trained tiny preset by default)."""

    model: str = Field(DEMO_MODEL, description="tiny-trained, tiny-random, a folder from `sevila convert`, or a "
                       "BLIP-2 id.", json_schema_extra={"cli": {"flags": ["--model", "-m"], "metavar": "NAME"}})
    out: Path = Field(Path("sevila_demo"), description="Folder for the generated clip and plot.",
                      json_schema_extra={"cli": {"metavar": "DIR"}})
    seed: int = Field(DEMO_SEED, ge=0, description="NeedleQA seed of the clip.")


class DemoResult(BaseModel):
    """The clip, its question and gold answer, the chain's result and the plot."""

    video: str
    question: str
    options: list[str]
    gold: int
    event: list[float] = Field(description="The asked event [start, end] in seconds.")
    keyframes_in_event: int = Field(description="Keyframes whose time lies in the asked event.")
    correct: bool
    result: ForwardResult
    plot: str


def make_clip(folder: Path, seed: int = DEMO_SEED) -> tuple[Path, VideoPlan]:
    """Write NeedleQA video 0 of ``seed`` to ``folder/demo_clip.mp4`` (default options); return it and its plan."""
    from sevila_tools.synth.encode import write_mp4
    from sevila_tools.synth.needleqa import NeedleQAConfig
    from sevila_tools.synth.render import FrameRenderer
    from sevila_tools.synth.world import plan_video

    cfg = NeedleQAConfig(out=folder)
    plan = plan_video(seed, 0, cfg.num_frames, cfg.fps, cfg.width, cfg.height)
    render = FrameRenderer(plan)
    folder.mkdir(parents=True, exist_ok=True)
    path = write_mp4(folder / "demo_clip.mp4", (render(i) for i in range(plan.num_frames)), cfg.fps, cfg.width,
                     cfg.height)
    return path, plan


def run_demo(cfg: DemoConfig, *, on_status: Callable[[str], None] | None = None) -> DemoResult:
    """Generate the clip, run the chain (32 candidates -> 4 keyframes), write ``demo_plot.png``."""
    from sevila_tools.chain import SevilaChain
    from sevila_tools.loading import load_runtime
    from sevila_tools.plotting import plot_localization
    from sevila_tools.schemas import ForwardRequest

    say = on_status or (lambda msg: None)
    runtime = load_runtime(cfg.model, cfg.checkpoint, device=cfg.device, trust_checkpoint=cfg.trust_checkpoint)
    video, plan = make_clip(cfg.out, cfg.seed)
    question, event = plan.question, plan.target_event.window(plan.fps)
    say(f"generated {video} (NeedleQA, {plan.num_frames / plan.fps:g} s, {plan.fps:g} fps)")
    request = ForwardRequest(video=str(video), question=question.text + "?",
                             options=[o + "." for o in question.options], num_frames=32, num_keyframes=4)
    result = SevilaChain(runtime, cfg.decoder).forward(request)
    plot = plot_localization(result.localization, cfg.out / "demo_plot.png")
    inside = sum(event[0] <= k.time <= event[1] for k in result.localization.keyframes)
    return DemoResult(video=str(video), question=request.question, options=request.options, gold=question.answer,
                      event=list(event), keyframes_in_event=inside,
                      correct=result.answer.answer_index == question.answer, result=result, plot=str(plot))


__all__ = ["DEMO_MODEL", "DemoConfig", "DemoResult", "make_clip", "run_demo"]
