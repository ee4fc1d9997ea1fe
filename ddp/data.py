"""Per-rank batches: DistributedSampler for the shard (epoch set every epoch), equal-sized batches on every
rank (a short last batch would weigh differently in DDP's gradient average), and resumption mid-epoch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

Batch = tuple[torch.Tensor, torch.Tensor]


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
        self.batches_per_epoch = len(self.sampler) // batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"training.batch_size {batch_size} is larger than this rank's share of the dataset "
                f"({len(self.sampler)} samples of {len(dataset)} across {world_size} ranks)"  # type: ignore[arg-type]
            )

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
