"""Category-grouped batches: in-batch negatives that differ in attributes, not only in category.

With uniformly random batches of 64 over 19 categories, most negatives of a caption are other
categories, which the category word alone tells apart; the loss then teaches little about
attributes. Here every global batch is made of ``k`` chunks of ``global_batch / k`` shapes, each
chunk from one category, so most negatives share the category and differ in a part.

Like :class:`daer.data.dataset.EpochBatchSampler` (same interface): deterministic per
``(seed, epoch)``, endless, resumable at any step, and rank r takes rows
``[r * batch_size, (r + 1) * batch_size)`` of each global batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from daer.errors import BadInputError


class CategoryBatchSampler:
    """Batches of ``(epoch, index)`` keys, each global batch drawn from ``k`` category chunks.

    Args:
        categories: the category of every shape of the data set.
        batch_size: shapes per step per rank.
        k: chunks (categories) per global batch; ``batch_size * world`` must be a multiple of it.
        seed, rank, world, start_step: as for ``EpochBatchSampler``.
    """

    def __init__(
        self,
        categories: Sequence[str],
        batch_size: int,
        k: int,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        start_step: int = 0,
    ) -> None:
        if batch_size < 1 or k < 1:
            raise BadInputError(f"batch size and categories per batch must be >= 1, got {batch_size} and {k}")
        if not 0 <= rank < world:
            raise BadInputError(f"rank {rank} outside world size {world}")
        self.batch_size, self.k, self.seed, self.rank, self.world = batch_size, k, seed, rank, world
        self.start_step = start_step
        global_batch = batch_size * world
        if global_batch % k:
            raise BadInputError(f"the global batch {global_batch} is not a multiple of {k} categories per batch")
        self.chunk = global_batch // k
        names = sorted(set(categories))
        codes = np.array([names.index(c) for c in categories], dtype=np.int64)
        self.members = [np.flatnonzero(codes == c) for c in range(len(names))]  # shape indices per category
        n_chunks = sum(len(m) // self.chunk for m in self.members)
        self.batches_per_epoch = n_chunks // k
        if self.batches_per_epoch == 0:
            raise BadInputError(
                f"no category has {self.chunk} shapes for a chunk of the global batch ({global_batch} over {k} "
                "categories): use fewer categories per batch or a smaller batch"
            )
        self._plan: tuple[int, np.ndarray] | None = None

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batch within epoch) of a global step."""
        return divmod(step, self.batches_per_epoch)

    def _epoch(self, epoch: int) -> np.ndarray:
        """(batches_per_epoch, global batch) shape indices of one epoch."""
        if self._plan is None or self._plan[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch, 0xCA7])
            chunks = []
            for m in self.members:
                perm = rng.permutation(m)
                usable = len(perm) - len(perm) % self.chunk
                chunks.extend(perm[:usable].reshape(-1, self.chunk))
            order = rng.permutation(len(chunks))[: self.batches_per_epoch * self.k]
            plan = np.stack([chunks[i] for i in order]).reshape(self.batches_per_epoch, -1)
            self._plan = (epoch, plan)
        return self._plan[1]

    def batch(self, step: int) -> list[tuple[int, int]]:
        """This rank's keys for global step ``step``."""
        epoch, b = self.position(step)
        rows = self._epoch(epoch)[b, self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        return [(epoch, int(i)) for i in rows]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1
