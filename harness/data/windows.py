"""Windows of seq_len + 1 tokens over a memmapped token stream, and the samplers that pick them.

A window w of shape (seq_len + 1,) gives inputs w[:-1] and targets w[1:]. Training draws random
offsets from a generator seeded by (seed, step); validation reads fixed windows in order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, Sampler, get_worker_info


class TokenWindows(Dataset[torch.Tensor]):
    """Item `offset` is tokens[offset : offset + seq_len + 1] as int64, shape (seq_len + 1,).

    Holds the file path, not the array, and maps it lazily in each process: a pickled memmap
    would copy the whole stream into every DataLoader worker.
    """

    def __init__(self, path: Path, dtype: type[np.unsignedinteger], seq_len: int):
        self.path, self.dtype, self.seq_len = Path(path), dtype, seq_len
        self.num_tokens = self.path.stat().st_size // np.dtype(dtype).itemsize
        self._tokens: np.ndarray | None = None

    def __len__(self) -> int:
        return max(self.num_tokens - self.seq_len, 0)  # number of valid offsets

    def __getitem__(self, offset: int) -> torch.Tensor:
        # np.array copies: torch.from_numpy of a read-only memmap would warn and alias the file
        window = np.array(self._mapped()[offset:offset + self.seq_len + 1], dtype=np.int64)
        return torch.from_numpy(window)

    def gather(self, offsets: np.ndarray) -> torch.Tensor:
        """The windows at `offsets` (B,) stacked, (B, seq_len + 1) int64, in one indexed read."""
        index = offsets[:, None] + np.arange(self.seq_len + 1)  # (B, seq_len + 1)
        return torch.from_numpy(self._mapped()[index].astype(np.int64))

    def _mapped(self) -> np.ndarray:
        if self._tokens is None:
            self._tokens = np.memmap(self.path, dtype=self.dtype, mode="r")
        return self._tokens

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tokens": None}


class StepBatches(IterableDataset[torch.Tensor]):
    """An endless stream of training batches (B, seq_len + 1); batch `step` depends on nothing but
    (seed, step), so a run resumed at step g continues with exactly the batches it would have had.

    Each batch holds `batch_size` uniform random windows. With several DataLoader workers, worker w
    yields steps start + w, start + w + n, ...: the loader's round-robin restores step order.
    """

    def __init__(self, windows: TokenWindows, batch_size: int, seed: int, start_step: int = 0):
        self.windows, self.batch_size, self.seed = windows, batch_size, seed
        self.start_step = start_step

    def batch(self, step: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(mix_seed(self.seed, step))
        offsets = torch.randint(len(self.windows), (self.batch_size,), generator=generator)
        return self.windows.gather(offsets.numpy())

    def __iter__(self) -> Iterator[torch.Tensor]:
        worker = get_worker_info()
        step, stride = self.start_step, 1
        if worker is not None:
            step, stride = step + worker.id, worker.num_workers
        while True:
            yield self.batch(step)
            step += stride


class FixedSampler(Sampler[int]):
    """The given offsets, in order, every time."""

    def __init__(self, offsets: Sequence[int]):
        self.offsets = list(offsets)

    def __len__(self) -> int:
        return len(self.offsets)

    def __iter__(self) -> Iterator[int]:
        return iter(self.offsets)


def validation_offsets(num_tokens: int, seq_len: int, max_windows: int | None) -> list[int]:
    """Windows at a stride of seq_len: every token after the first is a target exactly once.

    When there are more than `max_windows`, keep that many spread evenly over the stream (still in
    order and disjoint), so a cap samples every held-out document instead of only the first.
    """
    offsets = list(range(0, max(num_tokens - seq_len, 0), seq_len))
    if max_windows is None or len(offsets) <= max_windows:
        return offsets
    if max_windows == 1:
        return offsets[:1]
    last = len(offsets) - 1
    return [offsets[i * last // (max_windows - 1)] for i in range(max_windows)]


def mix_seed(seed: int, step: int) -> int:
    """A 63-bit generator seed from (seed, step) with no collisions between nearby pairs."""
    digest = hashlib.sha256(f"{seed}:{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
