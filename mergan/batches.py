"""Batches of a task's images: an endless stream whose order is a pure function of (seed, batch number), so an
interrupted run resumes on exactly the batches it would have seen; images mapped to [-1, 1] floats as the original
does with ``2*(x-.5)``.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from .data import DataError
from .records import fingerprint


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the original's ``2*(x/255 - .5)``."""
    return images.float().div_(127.5).sub_(1.0)


def batch_indices(n: int, batch_size: int, seed: int, k: int) -> torch.Tensor:
    """Indices of the k-th batch: epoch-wise shuffles seeded by (seed, epoch); the last partial batch dropped."""
    if n >= batch_size:
        per_epoch = n // batch_size
        epoch, j = divmod(k, per_epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        return perm[j * batch_size:(j + 1) * batch_size]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + k))
    return perm.repeat((batch_size + n - 1) // n)[:batch_size]  # fewer images than a batch


class _IndexBatches(torch.utils.data.Sampler):
    def __init__(self, n, batch_size, seed, start):
        self.n, self.batch_size, self.seed, self.start = n, batch_size, seed, start

    def __iter__(self):
        k = self.start
        while True:
            yield batch_indices(self.n, self.batch_size, self.seed, k).tolist()
            k += 1


def _collate(items):
    if isinstance(items[0], tuple):
        return torch.stack([i[0] for i in items]), torch.tensor([i[1] for i in items])
    return torch.stack(items)


class BatchStream:
    """An endless stream of batches starting at batch number ``start``; deterministic in (seed, number).

    ``drawn`` is a fingerprint of every batch drawn so far, chained batch after batch (give the saved one when
    resuming): what a process trained on, which the training state records per process."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, start: int = 0, num_workers: int = 0,
                 drawn: str = ""):
        self.dataset, self.batch_size, self.seed, self.k = dataset, batch_size, seed, start
        self.drawn = drawn
        self.n = len(dataset)
        self._loader = None
        if not getattr(dataset, "in_memory", False) and num_workers > 0:
            sampler = _IndexBatches(self.n, batch_size, seed, start)
            self._loader = iter(DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                                           collate_fn=_collate, persistent_workers=True, prefetch_factor=4))

    def __next__(self):
        if self._loader is not None:
            try:
                batch = next(self._loader)
            except DataError as e:   # raised in a worker: its message ends with the original one
                self.close()
                raise DataError(str(e).strip().splitlines()[-1].split("DataError: ", 1)[-1]) from None
        else:
            idx = batch_indices(self.n, self.batch_size, self.seed, self.k).tolist()
            batch = _collate([self.dataset[i] for i in idx])
        self.k += 1
        parts = batch if isinstance(batch, tuple) else (batch,)
        self.drawn = fingerprint(self.drawn, *(t.contiguous().numpy().tobytes() for t in parts))
        return batch

    def close(self) -> None:
        """Stop the decoding workers now (not whenever the garbage collector gets to them)."""
        loader, self._loader = self._loader, None
        if loader is not None:
            getattr(loader, "_shutdown_workers", lambda: None)()
