"""SeViLA prompt strings, exactly as the official dataset class builds them (spec ``sevila.md`` §4).

The question and options are used as given (no lower-casing, no punctuation changes): NExT-QA's
preprocessing has already appended ``?`` to questions and ``.`` to options.
"""

from __future__ import annotations

from sevila_tools.errors import InputError

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


def prompts_for(dataset: str | None, question: str, options: list[str]) -> tuple[str, str]:
    """(localizer text, answerer text) for a dataset name (``vlep`` differs; the rest share the MC templates)."""
    if dataset == "vlep":
        return vlep_localizer_prompt(options), vlep_answerer_prompt(options)
    if dataset == "qvhighlights":
        return qvhighlights_localizer_prompt(question), answerer_prompt(question, options)
    return localizer_prompt(question, options), answerer_prompt(question, options)
