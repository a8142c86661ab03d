"""The ``sevila`` commands: config models plus a library run each (flags, help and checks come from the configs,
:mod:`sevila_tools.cli.generate`); ``docs/cli.md`` shows the Python equivalent of every command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sevila_tools.cli import render
from sevila_tools.cli.common import console
from sevila_tools.cli.generate import Param, command, config_command
from sevila_tools.errors import InputError

MODEL = "sevila_tools.schemas:ModelOptions"


def _chain(args: Any, video: str, selector_options: dict[str, Any] | None = None) -> Any:
    """Check that ``video`` decodes, then the forward chain on the model the flags name (a spinner while it loads)."""
    from sevila_tools.chain import SevilaChain
    from sevila_tools.loading import load_runtime
    from sevila_tools.video import probe

    mo = args.config(MODEL)
    probe(video, decoder=mo.decoder)
    with args.status(f"loading {mo.model} ..."):
        rt = load_runtime(mo.model, mo.checkpoint, device=mo.device, trust_checkpoint=mo.trust_checkpoint)
    return SevilaChain(rt, mo.decoder, selector_options=selector_options)


@command("localize", models=("sevila_tools.schemas:ForwardRequest", MODEL), selector_block=True, defaults={"options": []},
         extra=(Param("plot", ["--plot"], kind=Path, metavar="FILE", help="Write a PNG: scores over time + keyframes."),))
def localize(args: Any) -> None:
    """Score sampled frames and keep the top keyframes; with --option also answer."""
    from sevila_tools.agents.toolset import SPECS
    from sevila_tools.schemas import LocalizeRequest, VideoQuestionRequest

    answers = bool(args.raw.get("options"))
    if len(args.raw.get("options") or []) == 1:
        raise InputError("give at least 2 options to answer (or none to only localize)")
    if not answers and args.given & {"decoding", "answerer"}:
        raise InputError("--decoding and --answerer need answer options (--option)")
    req = args.config(VideoQuestionRequest if answers else LocalizeRequest)
    chain = _chain(args, req.video, args.selector_options([req.selector]))
    result = SPECS["answer_video_question" if answers else "localize_keyframes"].run(lambda: chain, req)
    if args.raw.get("plot"):
        from sevila_tools.plotting import plot_localization

        plot_localization(result.localization if answers else result, args.raw["plot"], decoder=chain.pipeline.encoder.decoder)
        args.say(f"plot written to {args.raw['plot']}")
    args.emit(result, render.localization)


@command("answer", models=("sevila_tools.schemas:AnswerRequest", MODEL))
def answer(args: Any) -> None:
    """Answer a multiple-choice question from uniform frames or the frames at given times (no Localizer)."""
    from sevila_tools.schemas import AnswerRequest

    req = args.config(AnswerRequest)
    if req.timestamps and "num_frames" in args.given:
        raise InputError("--at and --frames exclude each other (--at reads exactly the frames at those times)")
    outside = [t for t in req.timestamps or [] if (req.start is not None and t < req.start) or (
        req.end is not None and t > req.end)]
    if outside:
        raise InputError(f"--at {outside[0]} is outside the window --start {req.start} --end {req.end}")
    args.emit(_chain(args, req.video).answerer(req), render.answer)


@command("moments", models=("sevila_tools.schemas:MomentsRequest", MODEL))
def moments(args: Any) -> None:
    """Find the moments of VIDEO that show QUERY: ranked [start, end, score] windows and 2-s saliency."""
    from sevila_tools.agents.toolset import SPECS

    req = args.config()
    chain = _chain(args, req.video)
    args.emit(SPECS["find_moments"].run(lambda: chain, req), render.moments)


config_command("selectors", "sevila_tools.plugins:PluginQuery", "sevila_tools.plugins:describe_selectors",
               "List the keyframe selectors: what they read, their options, and the package they come from.",
               render.selectors)
config_command("convert", "sevila_tools.loading:ConvertConfig", "sevila_tools.loading:run_convert",
               "Write a self-contained model folder (safetensors + configs + tokenizer) that loads offline.",
               render.converted, exclude=frozenset({"device", "decoder"}), status="building the model ...")
config_command("info", "sevila_tools.loading:InfoConfig", "sevila_tools.loading:run_info", "Versions and device; "
               "with a model that loads: where each part comes from, precision and token ids.",
               exclude=frozenset({"decoder"}), status="loading the model ...")
config_command("demo", "sevila_tools.demo:DemoConfig", "sevila_tools.demo:run_demo",
               "Generate a NeedleQA clip and run the forward chain on its question (the `make demo` job).",
               render.demo)
config_command("convert-frames", "sevila_tools.eval.convert_frames:ConvertFramesConfig", "sevila_tools.eval."
               "convert_frames:run_convert_frames", "Convert SeViLA's frames.jsonl to or from BOLT, AKS, TSPO and "
               "VideoITG frame files.", render.frames_converted)
config_command("synth", "sevila_tools.synth:SynthConfig", "sevila_tools.synth:run_synth", "Generate a synthetic "
               "video-QA set (needleqa: a short event answers each question).", render.synth, quiet=True)


@command("score", models=("sevila_tools.eval.score:ScoreConfig",), quiet=True)
def score(args: Any) -> None:
    """Score predictions with the dataset's official metric (no model); accuracies are percentages (2 decimals)."""
    import json

    from sevila_tools.eval.score import run_score
    from sevila_tools.eval.scorers import metrics_table

    metrics = run_score(args.config(), on_status=args.say)
    if args.json:
        print(json.dumps(metrics, indent=4))  # the official scorers' layout
    else:
        console.print(metrics_table(metrics))


config_command("eval", "sevila_tools.eval.runner:EvalConfig", "sevila_tools.eval.runner:run_eval", "Evaluate a "
               "dataset: pre-flight, batched predictions streamed to --out, metrics table (or --json).",
               render.eval_summary, config_file=True, quiet=True, selector_block=True)
config_command("ablate", "sevila_tools.eval.ablate:AblationConfig", "sevila_tools.eval.ablate:run_ablation",
               "Compare keyframe selectors: every selector x FRAMES:KEYFRAMES x answerer setting, one results "
               "table.", render.ablation, config_file=True, quiet=True, selector_block=True)
config_command("bench", "sevila_tools.benchmarks.config:BenchConfig", "sevila_tools.benchmarks.config:run_bench",
               "Time each stage of the pipeline and the whole chain (peak memory), and end-to-end scenarios.",
               render.bench, quiet=True)
config_command("mcp", "sevila_tools.agents.serve:McpConfig", "sevila_tools.agents.serve:run_mcp",
               "Serve the SeViLA tools to MCP clients (Claude Desktop, IDE agents...): stdio by default.", json=False)
config_command("web", "sevila_tools.web.serve:WebConfig", "sevila_tools.web.serve:run_web",
               "Serve a browser page: upload a video, ask, see keyframes, scores and the answer.", json=False)

_TRAIN, _STAGE = "sevila_tools.training.runconfig:{}RunConfig", "sevila_tools.training.run:run_train"
_TRAINING = {"config_file": True, "quiet": True}
config_command("pseudo-label", _TRAIN.format("PseudoLabel"), "sevila_tools.training.run:run_pseudo_label",
               "Reverse chain: the frozen Answerer's yes/no label for random frames of every question, one set per "
               "refinement epoch (OUT/pseudo_labels.jsonl).", render.pseudo_labels, **_TRAINING)
config_command("refine", _TRAIN.format("Refine"), _STAGE, "Reverse chain: train the Localizer on the frozen "
               "Answerer's pseudo-labels, from BLIP-2's Q-Former (init=base).", render.train, **_TRAINING)
config_command("finetune", _TRAIN.format("Finetune"), _STAGE, "Forward chain: fine-tune the Answerer on the frozen "
               "Localizer's keyframes.", render.train, exclude=frozenset({"labels"}), **_TRAINING)
config_command("pretrain-localizer", _TRAIN.format("Pretrain"), _STAGE, "Pre-train the Localizer on span "
               "annotations (QVHighlights): a frame is 'yes' inside a relevant window.", render.train,
               exclude=frozenset({"labels"}), **_TRAINING)
config_command("self-refine", _TRAIN.format("SelfRefine"), "sevila_tools.training.run:run_self_refine",
               "The paper's training loop: pre-train, then per iteration pseudo-label, refine, fine-tune. "
               "STAGE.KEY=VALUE sets one stage (pretrain, refine, finetune).", render.self_refine, **_TRAINING)
