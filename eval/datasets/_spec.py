"""The dataset contract: :class:`Sample`, :class:`DatasetSpec` (readers, video paths, scorer) and the registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from sevila_tools.errors import InputError
from sevila_tools.registry import Registry
from sevila_tools.schemas import DEFAULT_FRAMES

from ._reading import AnnotationFile, FileKind, load_video_map, parse_annotation_file

Task = Literal["multiple_choice", "moments"]
TASKS: tuple[str, ...] = ("multiple_choice", "moments")


class Sample(BaseModel):
    """One annotated question (multiple choice) or query (moments).

    ``empty_window`` is set when the annotation gives a window whose end is not after its start: such a
    question is kept and scored like any other (see ``docs/metrics.md``).
    """

    dataset: str
    qid: str
    video_id: str
    video: str
    question: str
    options: list[str]
    answer: int | None
    qtype: str | None
    start: float | None = None
    end: float | None = None
    duration: float | None = None
    windows: list[list[float]] | None = None
    empty_window: bool = False
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _mark_empty_window(self) -> Sample:
        if self.start is not None and self.end is not None and self.end <= self.start:
            self.empty_window = True
        return self


# ---------------------------------------------------------------------------------------------- video paths


@dataclass(frozen=True)
class VideoContext:
    """Where videos live for one load: a root folder or named folders, an id map and the file extension."""

    root: Path | None = None
    folders: Mapping[str, Path] | None = None
    id_map: Mapping[str, str] | None = None
    ext: str = ".mp4"

    @classmethod
    def build(
        cls,
        videos: str | Path | Mapping[str, str | Path] | None,
        video_map: str | Path | Mapping[str, str] | None,
        video_ext: str,
    ) -> VideoContext:
        ext = video_ext if (not video_ext or video_ext.startswith(".")) else "." + video_ext
        id_map = load_video_map(video_map)
        if isinstance(videos, Mapping):
            return cls(None, {str(k): Path(v) for k, v in videos.items()}, id_map, ext)
        return cls(Path(videos) if videos is not None else None, None, id_map, ext)


VideoRule = Callable[[str, str, VideoContext, str], str]
"""``rule(video_id, stem, context, where) -> video path`` (``stem``: the path the annotation gives)."""


def default_video_path(video_id: str, stem: str, ctx: VideoContext, where: str) -> str:
    """``root / (stem + ext)``; with an id map the stem is ``map[video_id]``; without a root, the stem."""
    if ctx.folders is not None:
        raise InputError(f"named video folders ({', '.join(ctx.folders)}) are not a layout of this dataset")
    if ctx.id_map is not None:
        if video_id not in ctx.id_map:
            raise InputError(f"{where}: video {video_id!r} is not in the video map")
        stem = ctx.id_map[video_id]
    if ctx.root is None:
        return stem
    return str(ctx.root / (stem + ctx.ext))


# ---------------------------------------------------------------------------------------------- readers


@dataclass(frozen=True)
class Reader:
    """One annotation format a dataset accepts.

    Attributes:
        name: short description shown in errors and docs (e.g. ``"official csv"``).
        kinds: file kinds it reads (``csv``, ``json`` list, ``jsonl``).
        matches: does the first record (csv: the header columns) look like this format?
        read: ``read(file, spec, paths) -> samples``; ``paths(video_id, stem, where)`` gives video paths.
    """

    name: str
    kinds: tuple[FileKind, ...]
    matches: Callable[[Mapping[str, Any]], bool]
    read: Callable[[AnnotationFile, DatasetSpec, Callable[[str, str, str], str]], list[Sample]]


Scorer = Callable[..., dict]
"""``scorer(predictions, samples, *, dataset, allow_missing, split, config) -> metrics dict``."""


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the toolkit knows about one benchmark; registered with :func:`register_dataset`.

    Attributes:
        name: lower-case id used on the command line and in result files.
        description: one line for listings.
        readers: accepted annotation formats, tried in order.
        prompt_style: name of the prompt style (``sevila_tools.prompts``).
        num_options: answer options per question (0 for moment retrieval).
        task: ``multiple_choice`` or ``moments``.
        scorer: the metric breakdown, see :data:`Scorer`.
        headline: name of the headline metric in the scorer's output.
        columns: display columns of result tables, in order.
        headline_column: the column of :attr:`columns` that shows the headline metric.
        video_path: rule turning a video id into a file path (:data:`VideoRule`).
        default_frames: candidate frames sampled per question by default.
        video_map_hint: told when videos are missing and no video map was given (datasets whose files are found
            through an id map, such as NExT-QA's VidOR folders).
    """

    name: str
    description: str
    readers: tuple[Reader, ...]
    prompt_style: str
    num_options: int
    task: Task
    scorer: Scorer
    headline: str
    columns: tuple[str, ...]
    headline_column: str = "Acc"
    video_path: VideoRule = default_video_path
    default_frames: int = DEFAULT_FRAMES
    video_map_hint: str | None = None

    def missing_videos_hint(self, video_map: object | None) -> str | None:
        """What to add to a "videos missing" message of a run given ``video_map`` (None: no map was given)."""
        return self.video_map_hint if video_map is None else None

    def load(
        self,
        annotations: str | Path,
        videos: str | Path | Mapping[str, str | Path] | None = None,
        video_map: str | Path | Mapping[str, str] | None = None,
        video_ext: str = ".mp4",
    ) -> list[Sample]:
        """Read an annotation file (format detected from its content) into samples.

        Args:
            annotations: any format in :attr:`readers` (plain or ``.gz``).
            videos: the video folder (or, where the dataset supports it, named folders).
            video_map: ``{video id: relative stem}`` or a JSON file holding it.
            video_ext: extension appended to the stem.
        """
        ctx = VideoContext.build(videos, video_map, video_ext)
        file = parse_annotation_file(annotations)

        def paths(video_id: str, stem: str, where: str) -> str:
            return self.video_path(video_id, stem, ctx, where)

        return self.reader_for(file).read(file, self, paths)

    def reader_for(self, file: AnnotationFile) -> Reader:
        """The first reader accepting ``file``; the error names the accepted formats (and a likely dataset)."""
        for reader in self.readers:
            if file.kind in reader.kinds and reader.matches(file.first):
                return reader
        hint = ""
        for other in available_datasets():
            spec = get_dataset(other)
            if spec.name != self.name and any(
                file.kind in r.kinds and r.matches(file.first) for r in spec.readers
            ):
                hint = f" (it looks like a {spec.name} file)"
                break
        accepted = "; ".join(r.name for r in self.readers)
        raise InputError(
            f"{file.path}: not a {self.name} annotation file{hint}; {self.name} reads: {accepted}"
        )

    def score(
        self,
        predictions: Any,
        samples: Sequence[Sample],
        *,
        allow_missing: bool = False,
        split: str | None = None,
        config: dict | None = None,
    ) -> dict:
        """Metrics of ``predictions`` (multiple choice: ``{qid: option index}``; moments: submission lines)."""
        return self.scorer(
            predictions, samples, dataset=self.name, allow_missing=allow_missing, split=split, config=config
        )


# ---------------------------------------------------------------------------------------------- registry

def _check(spec: DatasetSpec, registered: dict[str, DatasetSpec]) -> None:
    """Refuse a spec whose fields do not fit together (one line naming the field)."""
    from sevila_tools.prompts import get_prompt_style

    if not spec.name or spec.name != spec.name.strip().lower():
        raise ValueError(f"dataset name {spec.name!r} must be lower-case without spaces")
    if spec.task not in TASKS:
        raise ValueError(f"dataset {spec.name}: task must be one of {TASKS}, got {spec.task!r}")
    if (spec.task == "moments") != (spec.num_options == 0) or spec.num_options < 0:
        raise ValueError(f"dataset {spec.name}: num_options must be > 0 exactly for multiple choice")
    if not spec.readers or spec.default_frames < 1 or spec.headline_column not in spec.columns:
        raise ValueError(
            f"dataset {spec.name}: needs readers, default_frames >= 1 and headline_column in columns"
        )
    get_prompt_style(spec.prompt_style)


def _info(spec: DatasetSpec) -> dict[str, Any]:
    return {"task": spec.task, "num_options": spec.num_options, "default_frames": spec.default_frames}


#: every dataset by name, case-insensitive (this package's modules and the ``sevila_tools.datasets`` entry points);
#: listed multiple-choice datasets first
_REGISTRY: Registry[DatasetSpec] = Registry(
    "dataset", "sevila_tools.datasets", package=__name__.rsplit(".", 1)[0], normalize=str.lower,
    order=lambda s: (s.task != "multiple_choice", s.name), check=_check, info=_info,
)


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to the registry (checks the fields; a name can be registered once)."""
    return _REGISTRY.register(spec)


def available_datasets() -> tuple[str, ...]:
    """Registered dataset names: multiple-choice datasets first, then the others, alphabetical within."""
    return tuple(_REGISTRY.names())


def get_dataset(name: str | DatasetSpec) -> DatasetSpec:
    """The spec registered as ``name`` (case-insensitive); one-line :class:`InputError` listing the names."""
    if isinstance(name, DatasetSpec):
        return name
    return _REGISTRY[name]
