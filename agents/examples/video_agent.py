"""Example: a LangChain agent that answers a question about a video with the SeViLA tools, against any
OpenAI-compatible chat endpoint (set-up and usage: ``docs/agents.md``, "Example agent").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sevila_tools.schemas import DEFAULT_MODEL

SYSTEM_PROMPT = (
    "You answer questions about local video files with the SeViLA video tools. "
    "For a multiple-choice question call answer_video_question with the exact option texts (no letters). "
    "To find WHEN something happens call localize_keyframes; you may then pass its keyframe times as "
    "`timestamps` to answer_video_question. For an open question without options call ask_video. "
    "Tool results give times in seconds. Finish with one short answer, naming the chosen option and the keyframe "
    "times it is based on."
)


def make_chat_model(model: str | None = None, temperature: float = 0.0) -> Any:
    """A ``ChatOpenAI`` for the endpoint in ``OPENAI_BASE_URL``/``OPENAI_API_KEY``/``SEVILA_AGENT_MODEL``.

    Exits with a one-line hint when ``langchain-openai`` is not installed (it is not a dependency).
    """
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        print("video_agent: this example needs langchain-openai (pip install langchain-openai)", file=sys.stderr)
        raise SystemExit(2) from None
    return ChatOpenAI(
        model=model or os.environ.get("SEVILA_AGENT_MODEL", "gpt-4o-mini"),
        base_url=os.environ.get("OPENAI_BASE_URL") or None,
        api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
        temperature=temperature,
    )


def build_agent(chat_model: Any, tools: Sequence[Any], system_prompt: str = SYSTEM_PROMPT) -> Any:
    """The tool-calling agent graph (``langchain.agents.create_agent``)."""
    from langchain.agents import create_agent

    return create_agent(chat_model, tools=list(tools), system_prompt=system_prompt)


def user_message(video: str, question: str, options: Sequence[str] = ()) -> str:
    """The task handed to the agent."""
    text = f"Video file: {video}\nQuestion: {question}"
    if options:
        text += "\nOptions:\n" + "\n".join(f"- {o}" for o in options)
    return text


def run_agent(agent: Any, video: str, question: str, options: Sequence[str] = ()) -> dict[str, Any]:
    """Run the agent loop once; returns ``{"answer", "messages", "thumbnails"}``."""
    from langchain_core.messages import HumanMessage, ToolMessage

    state = agent.invoke({"messages": [HumanMessage(user_message(video, question, options))]})
    messages = state["messages"]
    thumbnails: list[str] = []
    for m in messages:
        if isinstance(m, ToolMessage) and isinstance(m.artifact, dict):
            thumbnails.extend(m.artifact.get("thumbnails", []))
    final = messages[-1]
    return {"answer": str(final.text), "messages": messages,
            "thumbnails": thumbnails}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="Answer a question about a video with an LLM agent + SeViLA.")
    parser.add_argument("video", type=Path)
    parser.add_argument("question")
    parser.add_argument("--option", "-o", action="append", default=[], help="An answer option (repeat).")
    parser.add_argument("--model", default=os.environ.get("SEVILA_MODEL", DEFAULT_MODEL),
                        help="SeViLA model: tiny-trained (NeedleQA clips, offline), a converted folder or a BLIP-2 id.")
    parser.add_argument("--checkpoint", default=os.environ.get("SEVILA_CHECKPOINT", "auto"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--chat-model", default=None, help="Overrides SEVILA_AGENT_MODEL.")
    args = parser.parse_args(argv)

    chat = make_chat_model(args.chat_model)  # fails fast (one line) without langchain-openai
    from sevila_tools.agents.langchain_tools import build_tools

    video = args.video.resolve()
    tools = build_tools(model=args.model, checkpoint=args.checkpoint, device=args.device, allow_dirs=[video.parent])
    out = run_agent(build_agent(chat, tools), str(video), args.question, args.option)
    for m in out["messages"]:
        for call in getattr(m, "tool_calls", None) or []:
            print(f"tool call: {call['name']} {json.dumps(call['args'])}", file=sys.stderr)
    for t in out["thumbnails"]:
        print(f"keyframe thumbnail: {t}", file=sys.stderr)
    print(out["answer"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
