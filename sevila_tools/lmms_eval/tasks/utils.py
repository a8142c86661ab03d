"""Hooks of the ``sevila_*`` tasks (``!function utils.NAME`` in the YAML files); the logic is in
:mod:`sevila_tools.lmms_eval.taskpack`."""

from sevila_tools.lmms_eval.taskpack import (
    doc_to_target,
    doc_to_text,
    doc_to_visual,
    docs_for,
    process_results,
)

nextqa_docs = docs_for("nextqa")
star_docs = docs_for("star")
how2qa_docs = docs_for("how2qa")
tvqa_docs = docs_for("tvqa")
vlep_docs = docs_for("vlep")

__all__ = ["doc_to_target", "doc_to_text", "doc_to_visual", "how2qa_docs", "nextqa_docs", "process_results",
           "star_docs", "tvqa_docs", "vlep_docs"]
