"""Synthetic data from one renderer: the NeedleQA video-QA set (``sevila synth needleqa``) and the frame corpus
the tiny base model was pre-trained on (``docs/needleqa.md``)."""

from sevila_tools.synth.needleqa import NeedleQAConfig, NeedleQASummary, SynthConfig, run_needleqa, run_synth
from sevila_tools.synth.world import COLOURS, KINDS, PLACES, TEMPLATES, VideoPlan, plan_video

__all__ = [
    "COLOURS",
    "KINDS",
    "PLACES",
    "TEMPLATES",
    "NeedleQAConfig",
    "NeedleQASummary",
    "SynthConfig",
    "VideoPlan",
    "plan_video",
    "run_needleqa",
    "run_synth",
]
