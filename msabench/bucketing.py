"""Length bucketing of training batches (``train.bucket_by_length = true``).

Methods that pad each batch to its longest input (MAG-BERT's word pieces, ``hf-text``
fine-tuning in ``boost-mtl``) spend their time on pad tokens when a short and a long
transcript share a batch. With bucketing on, an epoch is:

1. a seeded random permutation of the samples (the loop's generator, as without bucketing);
2. pools of ``POOL_BATCHES`` batches of that permutation, each sorted by length (stable, so
   equal lengths keep their random order), concatenated and cut into batches;
3. the batches in a seeded random order.

Every sample is seen exactly once per epoch, only the last cut batch can be smaller, and the
same seed gives the same batches. Lengths come from the module's ``sample_lengths(split)``
when it has one (MAG-BERT: word pieces after tokenisation), else from :func:`default_lengths`.
With bucketing off the loop uses ``SplitData.batch_indices`` exactly as before; both orders
come from :func:`msabench.training.epoch_order`.
"""

from __future__ import annotations

from typing import Any

import torch

from .api import SplitData

#: batches per sorted pool: large enough that a MOSI-sized split (1,284 training samples,
#: batch 48) is one pool, so batches are as homogeneous in length as possible
POOL_BATCHES = 50


def default_lengths(split: SplitData) -> torch.Tensor:
    """(N,) length of each sample: whitespace words of the transcript when the split has
    transcripts, else the longest valid sequence over its modalities (zeros: no lengths)."""
    if split.texts is not None:
        return torch.tensor([len(str(t).split()) for t in split.texts], dtype=torch.long)
    if split.lengths:
        return torch.stack([v.long() for v in split.lengths.values()]).amax(0)
    return torch.zeros(len(split), dtype=torch.long)


def sample_lengths(module: Any, split: SplitData) -> torch.Tensor:
    """The lengths bucketing sorts by: ``module.sample_lengths(split)`` if the module defines
    it (and returns a tensor), else :func:`default_lengths`."""
    hook = getattr(module, "sample_lengths", None)
    lengths = hook(split) if callable(hook) else None
    if lengths is None:
        lengths = default_lengths(split)
    lengths = torch.as_tensor(lengths).reshape(-1)
    if lengths.shape[0] != len(split):
        raise ValueError(f"sample_lengths returned {lengths.shape[0]} lengths for a split of "
                         f"{len(split)} samples")
    return lengths


def bucketed_order(lengths: torch.Tensor, batch_size: int,
                   generator: torch.Generator | None = None,
                   pool_batches: int = POOL_BATCHES) -> list[torch.Tensor]:
    """The index tensors of one epoch's batches (module docstring)."""
    n = int(lengths.shape[0])
    perm = torch.randperm(n, generator=generator)
    pool = max(1, int(batch_size) * int(pool_batches))
    pieces = []
    for start in range(0, n, pool):
        chunk = perm[start:start + pool]
        pieces.append(chunk[torch.argsort(lengths[chunk], stable=True)])
    order = torch.cat(pieces) if pieces else perm
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    shuffle = torch.randperm(len(batches), generator=generator)
    return [batches[int(i)] for i in shuffle]
