"""TVQA: ``tvqa_{split}.jsonl`` (subtitles unused) or SeViLA's JSON list (qids ``TVQA_{i}``)."""

from __future__ import annotations

from ..scorers.multiple_choice import ACCURACY_COLUMNS, score_accuracy
from ._qa_jsonl import qa_jsonl_reader
from ._sevila_json import sevila_list_reader
from ._spec import DatasetSpec, register_dataset

SPEC = register_dataset(
    DatasetSpec(
        name="tvqa",
        description="TVQA: multiple-choice questions on TV-show clips (5 options, subtitles unused)",
        readers=(qa_jsonl_reader("TVQA"), sevila_list_reader()),
        prompt_style="default",
        num_options=5,
        task="multiple_choice",
        scorer=score_accuracy,
        headline="overall",
        columns=ACCURACY_COLUMNS,
    )
)
