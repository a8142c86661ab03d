"""The ``make demo`` job as one library call: a synthetic clip, the forward chain on it, a plot (``sevila demo``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from sevila_tools.schemas import ForwardResult, ModelOptions


class DemoConfig(ModelOptions):
    """Where the demo writes its clip and plot, and which model it runs (the tiny preset by default)."""

    model: str = Field("tiny-random", description="tiny-random, a folder from `sevila convert`, or a BLIP-2 id.",
                       json_schema_extra={"cli": {"flags": ["--model", "-m"], "metavar": "NAME"}})
    out: Path = Field(Path("sevila_demo"), description="Folder for the generated clip and plot.",
                      json_schema_extra={"cli": {"metavar": "DIR"}})


class DemoResult(BaseModel):
    """The clip, the plot and the chain's result."""

    video: str
    plot: str
    result: ForwardResult


def run_demo(cfg: DemoConfig, *, on_status: Callable[[str], None] | None = None) -> DemoResult:
    """Generate a 5-s moving-square clip in ``cfg.out`` and run the forward chain on it."""
    from sevila_tools.chain import SevilaChain
    from sevila_tools.loading import load_runtime
    from sevila_tools.plotting import plot_localization
    from sevila_tools.schemas import ForwardRequest
    from sevila_tools.synthetic import make_video

    say = on_status or (lambda msg: None)
    runtime = load_runtime(cfg.model, cfg.checkpoint, device=cfg.device, trust_checkpoint=cfg.trust_checkpoint)
    cfg.out.mkdir(parents=True, exist_ok=True)
    video = make_video(cfg.out / "demo_clip.mp4", num_frames=150, fps=30)
    say(f"generated {video} (5 s, 30 fps, moving square)")
    chain = SevilaChain(runtime, cfg.decoder)
    result = chain.forward(ForwardRequest(
        video=str(video), question="what is the square doing?",
        options=["moving left.", "moving right.", "standing still."], num_frames=32, num_keyframes=4,
    ))
    plot = plot_localization(result.localization, cfg.out / "demo_plot.png")
    return DemoResult(video=str(video), plot=str(plot), result=result)


__all__ = ["DemoConfig", "DemoResult", "run_demo"]
