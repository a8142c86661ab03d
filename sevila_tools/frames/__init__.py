"""Frame-index files: SeViLA's keyframes for any Video-LLM (``docs/frames.md``).

``frames.jsonl`` (written by ``sevila select``, read by the ``file`` selector and the lmms-eval plugin), its
JSON Schema, and converters to and from the files of BOLT, AKS, TSPO and VideoITG.
"""

from __future__ import annotations

from .convert import (
    Question,
    fill_with_fps,
    frame_times,
    from_aks,
    from_bolt,
    from_tspo,
    from_videoitg,
    native_frames,
    to_aks,
    to_bolt,
    to_tspo,
    to_videoitg,
)
from .format import (
    FORMAT,
    FRAMES_NAME,
    SCHEMA_FILE,
    Candidates,
    ErrorRecord,
    FrameRecord,
    FramesFile,
    Provenance,
    dump_record,
    json_schema,
    parse_line,
    read_frames_file,
    shipped_schema,
    write_frames_file,
)
from .sniff import FORMATS, sniff_format

__all__ = [
    "FORMAT",
    "FORMATS",
    "FRAMES_NAME",
    "SCHEMA_FILE",
    "Candidates",
    "ErrorRecord",
    "FrameRecord",
    "FramesFile",
    "Provenance",
    "Question",
    "dump_record",
    "fill_with_fps",
    "frame_times",
    "from_aks",
    "from_bolt",
    "from_tspo",
    "from_videoitg",
    "json_schema",
    "native_frames",
    "parse_line",
    "read_frames_file",
    "shipped_schema",
    "sniff_format",
    "to_aks",
    "to_bolt",
    "to_tspo",
    "to_videoitg",
    "write_frames_file",
]
