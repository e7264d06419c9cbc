"""Data-parallel runs: this process's rank, the barriers between ranks (rank_group.py), each rank's share of a
task's samples (in its own durable shard) and the merge of the shards into the task's log."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

from eval_anything.datamodel import Sample
from eval_anything.rank_group import RankGroup, join, rank_timeout_default
from eval_anything.rundir import RunDirectory
from eval_anything.tasks import DataFileError, Task


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel run: rank r of `world` evaluates the samples whose
    position in the task's sample order is r modulo `world`, into its own durable shard."""

    rank: int = 0
    world: int = 1
    group: RankGroup | None = None
    """Where the ranks meet (None for one process): barriers that tell a slow rank from a dead one."""

    @property
    def primary(self) -> bool:
        return self.rank == 0

    def mine(self, index: int) -> bool:
        return index % self.world == self.rank

    def barrier(self) -> None:
        """Wait for every rank, however long a live one takes; raises RankLostError naming a rank
        whose heartbeat stopped for the rank timeout."""
        if self.group is not None:
            self.group.barrier()

    def check(self) -> None:
        """Raise RankLostError if another rank died while this one evaluated (a no-op for one process)."""
        if self.group is not None:
            self.group.check()

    def total(self, count: int) -> int:
        """The sum of `count` over every rank."""
        return count if self.group is None else self.group.total(count)

    def close(self) -> None:
        """Leave the group once this rank is done (rank 0, which hosts the store, last)."""
        if self.group is not None:
            self.group.leave()


def data_parallel(rank_timeout: float | None = None) -> DataParallel:
    """Rank and world size from the launcher (`accelerate launch`, `torchrun`: WORLD_SIZE, RANK and
    MASTER_ADDR/PORT); torch is imported, and the ranks' store joined, only when WORLD_SIZE > 1.
    `rank_timeout`: seconds without a heartbeat after which a rank is dead (default
    $EVAL_ANYTHING_RANK_TIMEOUT_S, else 120)."""
    world = int(os.environ.get("WORLD_SIZE") or 1)
    if world <= 1:
        return DataParallel()
    rank = int(os.environ.get("RANK") or 0)
    timeout = rank_timeout_default() if rank_timeout is None else rank_timeout
    return DataParallel(rank, world, join(rank, world, timeout))


@dataclass(frozen=True)
class Share:
    """One rank's share of a task: the samples at positions rank, rank + world, ..."""

    pending: Iterator[Sample]
    """Those no earlier invocation (of any world size) finished, read lazily in the task's order."""
    owned: int
    """How many samples are this rank's."""
    finished: int
    """How many of them an earlier invocation finished."""
    any_left: bool
    """Whether any rank has a sample left to evaluate."""


def share_of(task: Task, run_dir: RunDirectory, parallel: DataParallel, limit: int | None) -> Share:
    """This rank's share of `task`, from what the task's log and every shard on disk hold."""
    done: set[str] = set(run_dir.samples(task.name).completed())
    for shard in run_dir.shards(task.name):
        done.update(shard.completed())
    owned = finished = 0
    any_left = False
    for index, sample in enumerate(task.samples(limit)):
        is_done = sample.id in done
        any_left = any_left or not is_done
        if parallel.mine(index):
            owned += 1
            finished += is_done
    pending = (s for i, s in enumerate(task.samples(limit)) if parallel.mine(i) and s.id not in done)
    return Share(pending, owned, finished, any_left)


def merge_shards(task: Task, run_dir: RunDirectory, limit: int | None) -> None:
    """Fold every rank's shard into the task's log in the task's sample order (in the shards' order
    when the task's data cannot be read): rank 0, once every shard is durable."""
    try:
        run_dir.merge_shards(task.name, (s.id for s in task.samples(limit)))
    except DataFileError:
        run_dir.merge_shards(task.name, ())
