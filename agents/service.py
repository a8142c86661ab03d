"""One thread-safe tool service (one lazily loaded model, one worker thread, allowed roots) shared by the
LangChain tools and the MCP server; it runs the entries of the one tool list (:mod:`sevila_tools.agents.toolset`)."""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import threading
import uuid
import weakref
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sevila_tools.agents.toolset import SPECS, ToolSpec
from sevila_tools.errors import InputError, error_line
from sevila_tools.schemas import DEFAULT_MODEL, VideoAnswerResult, weights_notice
from sevila_tools.video import WarmDecoders

log = logging.getLogger("sevila_tools.agents")

#: Longest side of keyframe thumbnails (pixels).
THUMBNAIL_SIZE = 320


# ------------------------------------------------------------------------------------------------ service
class ToolService:
    """The SeViLA tools over one lazily loaded runtime, one worker thread and a path allow-list.

    Args:
        runtime: an already loaded runtime to share (else ``model``/``checkpoint``/``device`` are loaded on first
            use, once).
        model, checkpoint, device, trust_checkpoint: as for :func:`sevila_tools.loading.load_runtime`.
        decoder: video reader (``auto``, ``decord``, ``pyav``).
        prompts: prompt style (:func:`sevila_tools.prompts.get_prompt_style`; None: the multiple-choice default).
        allow_dirs: video paths must resolve (symlinks followed) under one of these folders; ``None`` allows any
            path (library use). Relative video paths are resolved against the first folder (else the working
            directory).
        output_dir: where keyframe thumbnails go (default: a fresh temporary folder).
        cache_items: frame/feature sets kept in memory (repeat questions on a video skip decoding and the ViT).
    """

    def __init__(
        self,
        runtime: Any = None,
        *,
        model: str = DEFAULT_MODEL,
        checkpoint: str = "auto",
        device: str = "auto",
        trust_checkpoint: bool = False,
        decoder: str = "auto",
        prompts: str | None = None,
        allow_dirs: Sequence[str | os.PathLike[str]] | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        cache_items: int = 16,
    ) -> None:
        self.model = model
        self.checkpoint = checkpoint
        self.device = device
        self.trust_checkpoint = trust_checkpoint
        self.decoder = decoder
        self.prompts = prompts
        self._owns_output_dir = output_dir is None
        self.cache_items = cache_items
        self.allow_dirs: list[Path] | None = None
        if allow_dirs is not None:
            self.allow_dirs = [Path(os.path.realpath(Path(d).expanduser())) for d in allow_dirs]
            for d in self.allow_dirs:
                if not d.is_dir():
                    raise InputError(f"allowed directory does not exist or is not a folder: {d}")
        self._output_dir = Path(output_dir) if output_dir is not None else None
        self._runtime = runtime
        self._chain: Any = None
        self.loads = 0  # how many times a runtime was loaded (at most 1)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sevila-model")
        self._dir_lock = threading.Lock()
        self._decoders = WarmDecoders()  # decode workers kept warm: a new video pays no process start-up

    # -------------------------------------------------------------------------------------------- runtime
    def _ensure_chain(self) -> Any:
        """Runs on the worker thread only: load the runtime (once) and build the chain (once)."""
        if self._chain is None:
            from sevila_tools.chain import SevilaChain
            from sevila_tools.encoding import MemoryStore

            if self._runtime is None:
                from sevila_tools.loading import load_runtime

                log.info("loading %s (checkpoint %s) ...", self.model, self.checkpoint)
                self._runtime = load_runtime(
                    self.model, self.checkpoint, device=self.device, trust_checkpoint=self.trust_checkpoint
                )
                self.loads += 1
                if notice := weights_notice(self._runtime.random_weights):
                    log.warning("%s", notice)
                log.info("model ready on %s", self._runtime.device)
            self._chain = SevilaChain(
                self._runtime, decoder=self.decoder, store=MemoryStore(self.cache_items), prompts=self.prompts
            )
        return self._chain

    def load(self) -> Any:
        """Load the runtime now (blocking; idempotent) and return it."""
        self._executor.submit(self._ensure_chain).result()
        return self._runtime

    def warm_up(self) -> Future[Any]:
        """Start loading the runtime in the background (the first tool call waits for it; a failure is logged
        and retried, with its message, by each call)."""
        fut = self._executor.submit(self._ensure_chain)

        def report(f: Future[Any]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.error("model loading failed: %s", error_line(f.exception()))  # type: ignore[arg-type]

        fut.add_done_callback(report)
        return fut

    @property
    def runtime(self) -> Any:
        """The shared runtime (loaded on first access)."""
        return self._runtime if self._runtime is not None else self.load()

    def close(self, wait: bool = True, cancel_pending: bool = False) -> None:
        """Stop the worker thread (after the queued calls, unless ``cancel_pending``) and delete the thumbnail
        folder when the service created it."""
        self._executor.shutdown(wait=wait, cancel_futures=cancel_pending)
        self._decoders.close()
        with self._dir_lock:
            if self._owns_output_dir and self._output_dir is not None:
                shutil.rmtree(self._output_dir, ignore_errors=True)
                self._output_dir = None

    # -------------------------------------------------------------------------------------------- paths
    @property
    def output_dir(self) -> Path:
        """Folder for keyframe thumbnails (created on first use)."""
        with self._dir_lock:
            if self._output_dir is None:
                self._output_dir = Path(tempfile.mkdtemp(prefix="sevila_agent_"))
                # the tool set may never be closed explicitly: remove the thumbnails when it is collected or exits
                weakref.finalize(self, shutil.rmtree, str(self._output_dir), True)
            self._output_dir.mkdir(parents=True, exist_ok=True)
            return self._output_dir

    def resolve_video(self, video: str) -> str:
        """The real path of ``video``, refused unless it lies under an allowed directory (symlinks resolved)."""
        if not isinstance(video, str) or not video.strip():
            raise InputError("video path is empty")
        p = Path(video).expanduser()
        if not p.is_absolute():
            base = self.allow_dirs[0] if self.allow_dirs else Path.cwd()
            p = base / p
        real = Path(os.path.realpath(p))
        if self.allow_dirs is not None and not any(real.is_relative_to(d) for d in self.allow_dirs):
            roots = ", ".join(str(d) for d in self.allow_dirs)
            raise InputError(f"video path is outside the allowed directories ({roots}): {video}")
        from sevila_tools.video import check_video_path

        check_video_path(real)  # VideoError: missing, a directory, not a regular file, empty
        return str(real)

    # -------------------------------------------------------------------------------------------- requests
    def prepare(self, name: str, args: BaseModel | dict[str, Any] | None) -> BaseModel:
        """``args`` as tool ``name``'s request (validated once: a request instance is used as it is) with the video
        path resolved and checked."""
        spec = self.spec(name)
        if type(args) is spec.request_model:
            req = args
        else:
            raw = args.model_dump() if isinstance(args, BaseModel) else dict(args or {})
            req = spec.request_model.model_validate(raw)
        if spec.needs_video:
            req = req.model_copy(update={"video": self.resolve_video(req.video)})  # type: ignore[attr-defined]
        return req

    @staticmethod
    def spec(name: str) -> ToolSpec:
        if name not in SPECS:
            raise InputError(f"unknown tool {name!r}; tools: {', '.join(SPECS)}")
        return SPECS[name]

    def submit(self, name: str, args: BaseModel | dict[str, Any] | None) -> Future[BaseModel]:
        """Validate now, queue the model work on the worker thread; the future holds the result model."""
        req = self.prepare(name, args)
        return self._executor.submit(self.spec(name).run, self._ensure_chain, req)

    def call(self, name: str, args: BaseModel | dict[str, Any] | None = None) -> BaseModel:
        """Run tool ``name`` (blocking; safe from any thread)."""
        return self.submit(name, args).result()

    async def acall(self, name: str, args: BaseModel | dict[str, Any] | None = None) -> BaseModel:
        """Run tool ``name`` without blocking the event loop (the model work stays on the worker thread)."""
        fut = self.submit(name, args)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # another async library (trio): wait in a thread
            import anyio.to_thread

            return await anyio.to_thread.run_sync(fut.result, abandon_on_cancel=True)
        return await asyncio.wrap_future(fut)

    # -------------------------------------------------------------------------------------------- thumbnails
    def thumbnails(self, name: str, result: BaseModel, size: int = THUMBNAIL_SIZE) -> list[str]:
        """Write the keyframes of ``result`` as JPEG files (native aspect, longest side ``size``); their paths.

        Decoding happens in the calling thread (not on the model worker). Failures are logged, never raised.
        """
        kfs = self.spec(name).keyframes(result)
        video = getattr(result, "video", None)
        if video is None and isinstance(result, VideoAnswerResult):
            video = result.answer.video
        if not kfs or not video:
            return []
        try:
            from PIL import Image

            from sevila_tools.video import read_frames

            frames, _ = read_frames(video, [k.frame_index for k in kfs], decoder=self.decoder, size=None)
            stem = f"{Path(video).stem[:40]}-{uuid.uuid4().hex[:8]}"
            paths = []
            for k, frame in zip(kfs, frames, strict=True):
                img = Image.fromarray(frame)
                img.thumbnail((size, size))
                path = self.output_dir / f"{stem}-t{k.time:08.3f}-f{k.frame_index}.jpg"
                img.save(path, format="JPEG", quality=85)
                paths.append(str(path))
            return paths
        except Exception as exc:  # noqa: BLE001 - thumbnails are a convenience
            log.warning("could not write keyframe thumbnails for %s: %s", video, error_line(exc))
            return []
