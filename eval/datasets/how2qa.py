"""How2QA: ``how2qa_{split}_release.jsonl`` or SeViLA's JSON list (qids ``HOW2QA_{i}``)."""

from __future__ import annotations

from ..scorers.multiple_choice import ACCURACY_COLUMNS, score_accuracy
from ._qa_jsonl import qa_jsonl_reader
from ._sevila_json import sevila_list_reader
from ._spec import DatasetSpec, register_dataset

SPEC = register_dataset(
    DatasetSpec(
        name="how2qa",
        description="How2QA: multiple-choice questions on instructional video segments (4 options)",
        readers=(qa_jsonl_reader("HOW2QA"), sevila_list_reader()),
        prompt_style="default",
        num_options=4,
        task="multiple_choice",
        scorer=score_accuracy,
        headline="overall",
        columns=ACCURACY_COLUMNS,
    )
)
