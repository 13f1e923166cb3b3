"""Where checkpoints live: a local folder, a shared path (NFS on a cluster) or an fsspec URL such
as `s3://bucket/prefix`.

A study's trial may be retried on another machine, so a checkpoint's location is a plain string
that every worker can read (an absolute path or a URL) and every read and write goes through
fsspec, which Lightning also uses. Writes are atomic: the bytes go to a temporary file beside the
target and are then moved into place, so a worker killed mid-write leaves the previous checkpoint
whole (on object stores the final PUT is atomic by itself).
"""

from __future__ import annotations

import contextlib
import io
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fsspec
import torch
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from harness.faults import crash_point


def is_url(location: str) -> bool:
    return "://" in location


def root_location(root: str | Path) -> str:
    """A checkpoint root as every worker should record it: URLs as given, paths (and file://
    URLs, which Lightning would take for relative paths) made absolute paths."""
    text = str(root)
    if text.startswith("file://"):
        text = urlsplit(text).path
    return text.rstrip("/") if is_url(text) else str(Path(text).expanduser().resolve())


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def exists(location: str) -> bool:
    fs, path = fsspec.core.url_to_fs(location)
    return fs.isfile(path)


def write_bytes(location: str, data: bytes) -> None:
    """Write `data` to `location` atomically (temporary file, then a move)."""
    _write_atomically(location, lambda fs, partial: fs.pipe_file(partial, data))


def _write_atomically(location: str, write: Callable[[AbstractFileSystem, str], None]) -> None:
    """`write(fs, partial)` fills a temporary file beside `location`, then it is moved there."""
    fs, path = fsspec.core.url_to_fs(location)
    fs.makedirs(path.rpartition("/")[0], exist_ok=True)
    partial = f"{path}.partial-{uuid.uuid4().hex[:8]}"
    write(fs, partial)
    crash_point("checkpoint.write")
    fs.mv(partial, path)


def _upload(checkpoint: dict[str, Any], fs: AbstractFileSystem, partial: str) -> None:
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    fs.pipe_file(partial, buffer.getvalue())


@contextlib.contextmanager
def _without_crc32() -> Iterator[None]:
    """torch.save without its zip records' CRC-32s, for this call only (torch.load reads such
    files as any other). Computing them is ~4x the write itself (100 MB: 82 ms against 18); a
    local checkpoint is renamed into place whole, so a checksum would only ever see whole files.
    """
    from torch.utils.serialization import config

    before = config.save.compute_crc32
    config.save.compute_crc32 = False
    try:
        yield
    finally:
        config.save.compute_crc32 = before


def _replace_keeping(spare: str, target: str) -> None:
    """Move `spare` onto `target` atomically; the file it replaces becomes `spare` (a hard link
    keeps it: its blocks and cached pages are not freed, to be rewritten next time)."""
    kept: str | None = f"{spare}.old"
    with contextlib.suppress(FileNotFoundError):
        os.remove(kept)
    try:
        os.link(target, kept)
    except OSError:  # the first checkpoint, or a file system without hard links
        kept = None
    os.replace(spare, target)
    if kept is not None:
        os.replace(kept, spare)


def write_text(location: str, text: str) -> None:
    write_bytes(location, text.encode())


def load(location: str) -> Any:
    """torch.load of a checkpoint, weights only: a checkpoint is data, never code to run."""
    with fsspec.open(location, "rb") as file:
        return torch.load(io.BytesIO(file.read()), map_location="cpu", weights_only=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, atomic as `write_bytes` (with its crash point);
    `on_saved(step)` is called once a checkpoint is in place; `seconds` sums the writes,
    `saved_step` is the step of the last one (None before any).

    On a local disk each checkpoint is written in place into this writer's spare file, the
    checkpoint before last, and moved onto the checkpoint, which becomes the spare. A new file of
    a large checkpoint costs several times its write (page-cache pages allocated, the replaced
    file's blocks freed); the spare's are reused. The spare is this writer's alone (no other
    worker writes into it) and never read by name (a reader that opened a checkpoint before it
    was replaced has until the next checkpoint to finish); `release()` removes it when the run
    ends, however it ends. A killed worker leaves it beside the checkpoint, as it may leave a
    partial file.
    """

    def __init__(self, on_saved: Callable[[int], None] | None = None):
        self.on_saved = on_saved
        self._token = uuid.uuid4().hex[:8]
        self._spares: set[str] = set()
        self.seconds = 0.0
        self.saved_step: int | None = None

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any = None) -> None:
        start = time.perf_counter()
        fs, target = fsspec.core.url_to_fs(str(path))
        if isinstance(fs, LocalFileSystem):
            self._save_in_spare(checkpoint, target)
        else:
            _write_atomically(str(path), lambda fs, partial: _upload(checkpoint, fs, partial))
        self.seconds += time.perf_counter() - start
        self.saved_step = int(checkpoint.get("global_step", 0))
        if self.on_saved is not None:
            self.on_saved(self.saved_step)

    def _save_in_spare(self, checkpoint: dict[str, Any], target: str) -> None:
        spare = f"{target}.spare-{self._token}"
        os.makedirs(os.path.dirname(target), exist_ok=True)
        self._spares.add(spare)
        with (os.fdopen(os.open(spare, os.O_RDWR | os.O_CREAT, 0o666), "r+b") as file,
              _without_crc32()):
            torch.save(checkpoint, file)  # the same bytes as into a buffer, less the checksums
            file.truncate()  # a longer earlier checkpoint's tail
        crash_point("checkpoint.write")
        _replace_keeping(spare, target)

    def release(self) -> None:
        """Remove this writer's spare files; the checkpoints stay."""
        for spare in self._spares:
            for name in (spare, f"{spare}.old"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(name)
        self._spares.clear()
