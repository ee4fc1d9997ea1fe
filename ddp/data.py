"""Per-rank batches: DistributedSampler for the shard (epoch set every epoch), equal-sized batches on every
rank (a short last batch would weigh differently in DDP's gradient average), and resumption mid-epoch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

Batch = tuple[torch.Tensor, torch.Tensor]


def rank_share(num_samples: int, world_size: int) -> int:
    """Samples each rank draws per epoch. DistributedSampler (drop_last=False) pads the shards to one size
    by repeating samples, so every rank gets ceil(num_samples / world_size)."""
    return -(-num_samples // world_size)


def shard_problem(num_samples: int, world_size: int, batch_size: int) -> str | None:
    """Why `batch_size` cannot train on a rank's shard, or None when it can."""
    share = rank_share(num_samples, world_size)
    if batch_size <= share:
        return None
    return (
        f"training.batch_size: {batch_size} is more than one rank's share of the data ({num_samples} "
        f"samples over {world_size} rank(s) is {share} each); a rank drops its short last batch (it would "
        "weigh differently in DDP's gradient average), so it would train on nothing: expected "
        f"training.batch_size <= {share}, or more samples, or fewer ranks"
    )


class ShardedBatches:
    def __init__(
        self,
        dataset: Dataset[Any],
        batch_size: int,
        rank: int,
        world_size: int,
        seed: int,
        num_workers: int = 0,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.sampler: DistributedSampler[Any] = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed
        )
        problem = shard_problem(len(dataset), world_size, batch_size)  # type: ignore[arg-type]
        if problem is not None:
            raise ValueError(problem)
        self.batches_per_epoch = len(self.sampler) // batch_size

    def epoch(self, epoch: int, skip_batches: int = 0) -> Iterator[Batch]:
        """Batches of `epoch`, starting after the first `skip_batches` (used on resume)."""
        self.sampler.set_epoch(epoch)
        indices = list(self.sampler)
        starts = range(
            skip_batches * self.batch_size, self.batches_per_epoch * self.batch_size, self.batch_size
        )
        groups = [indices[s : s + self.batch_size] for s in starts]
        if isinstance(self.dataset, TensorDataset) and self.num_workers == 0:
            # In-memory tensors: one fancy-index per batch instead of collating batch_size items.
            inputs, targets = self.dataset.tensors[:2]
            for group in groups:
                idx = torch.tensor(group)
                yield inputs[idx], targets[idx]
            return
        loader = DataLoader(self.dataset, batch_sampler=groups, num_workers=self.num_workers)
        for inputs, targets in loader:
            yield inputs, targets
