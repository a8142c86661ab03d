"""SeViLA's prompt texts and the registry of prompt styles (the wording rules are in ``docs/method.md``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sevila_tools.errors import InputError
from sevila_tools.registry import Registry

LETTERS = "ABCDE"
MAX_OPTIONS = len(LETTERS)
FRAME_PREFIX = "Frame: "
LOC_INSTRUCTION = "Does the information within the frame provide the necessary details to accurately answer the given question?"
LOC_INSTRUCTION_VLEP = (
    "Does the information within the frame provide the necessary details to predict next event?"
)
QA_INSTRUCTION = (
    "Considering the information presented in the frame, select the correct answer from the options."
)
VLEP_HEAD = "Upon observing the provided frames, what is the most probable subsequent event?"


def video_prefix(i: int) -> str:
    """Prefix of the i-th keyframe (1-based rank in temporal order) in the multi-frame Answerer input."""
    return f"Frame {i}: "


def _check_options(options: list[str]) -> None:
    if len(options) > MAX_OPTIONS:
        raise InputError(f"at most {MAX_OPTIONS} options are supported (got {len(options)})")


def localizer_prompt(question: str, options: list[str]) -> str:
    """Localizer text for multiple-choice QA (NExT-QA, STAR, How2QA, TVQA).

    Options are joined without letters, each followed by one space, hence the space before ``)``.
    With no options (free-form localisation) the ``Options: ( )`` part is left out.
    """
    _check_options(options)
    if not options:
        return f"Question: {question} {LOC_INSTRUCTION}"
    joined = "".join(f"{o} " for o in options)
    return f"Question: {question} Options: ({joined}) {LOC_INSTRUCTION}"


def answerer_prompt(question: str, options: list[str]) -> str:
    """Answerer text for multiple-choice QA: one `` Option X: {text}`` per option, then the instruction."""
    _check_options(options)
    opts = "".join(f" Option {LETTERS[i]}: {o}" for i, o in enumerate(options))
    return f"Question: {question}{opts} {QA_INSTRUCTION}"


def vlep_answerer_prompt(options: list[str]) -> str:
    """VLEP Answerer text (no question, no trailing instruction)."""
    _check_options(options)
    opts = "".join(f" Option {LETTERS[i]}: {o}" for i, o in enumerate(options))
    return f"{VLEP_HEAD}{opts}"


def vlep_localizer_prompt(options: list[str]) -> str:
    """VLEP Localizer text: the VLEP answerer text plus the next-event instruction."""
    return f"{vlep_answerer_prompt(options)} {LOC_INSTRUCTION_VLEP}"


def qvhighlights_localizer_prompt(query: str) -> str:
    """Localizer text for QVHighlights queries (a ``.`` is appended when missing)."""
    q = query if query.endswith(".") else query + "."
    return f"Question: {q} Option A: yes. Option B: no. {LOC_INSTRUCTION}"


def answer_target(index: int) -> str:
    """Training target of the Answerer, e.g. ``Option C``."""
    return f"Option {LETTERS[index]}"


def open_question_prompt(question: str) -> str:
    """Prompt for free-text answers (``ask_video``); not part of the official code."""
    return f"Question: {question} Answer:"


@dataclass(frozen=True)
class PromptStyle:
    """How one family of datasets words the Localizer and Answerer texts (see ``docs/method.md``)."""

    name: str
    localizer: Callable[[str, list[str]], str]
    answerer: Callable[[str, list[str]], str]
    description: str = ""


#: every prompt style by name (defined in this module and by the ``sevila_tools.prompt_styles`` entry points)
PROMPT_STYLES: Registry[PromptStyle] = Registry("prompt style", "sevila_tools.prompt_styles")


def register_prompt_style(style: PromptStyle) -> PromptStyle:
    """Add a prompt style to :data:`PROMPT_STYLES` (names are unique)."""
    return PROMPT_STYLES.register(style)


DEFAULT_STYLE = register_prompt_style(
    PromptStyle("default", localizer_prompt, answerer_prompt, "multiple-choice QA (NExT-QA, STAR, How2QA, TVQA)")
)
register_prompt_style(
    PromptStyle(
        "next_event",
        lambda _q, options: vlep_localizer_prompt(options),
        lambda _q, options: vlep_answerer_prompt(options),
        "next-event prediction: no question, the options are possible next events (VLEP)",
    )
)
register_prompt_style(
    PromptStyle(
        "query_relevance",
        lambda query, _options: qvhighlights_localizer_prompt(query),
        answerer_prompt,
        "free-text query relevance (QVHighlights moment retrieval)",
    )
)


def get_prompt_style(style: str | PromptStyle | None) -> PromptStyle:
    """A registered style by name (``None``: the default multiple-choice style); one-line error otherwise."""
    if isinstance(style, PromptStyle):
        return style
    if style is None:
        return DEFAULT_STYLE
    return PROMPT_STYLES[style]


def prompts_for(style: str | PromptStyle | None, question: str, options: list[str]) -> tuple[str, str]:
    """(localizer text, answerer text) of ``question``/``options`` in a prompt style."""
    st = get_prompt_style(style)
    return st.localizer(question, list(options)), st.answerer(question, list(options))
