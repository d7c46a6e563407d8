"""Two gloo ranks on this machine, for the tests that compare data sharded over ranks with one process on all
of it."""
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

#: ``measure(rank, group)``: the arrays one rank computes on its shard (a module-level function: it is pickled)
Measure = Callable[[int, Any], dict[str, np.ndarray]]


def sharded_problem() -> tuple[nn.Module, nn.Module, tuple, list]:
    """A small float64 classifier, its loss, 13 samples and their two shards: rank 0 one batch of 5 samples,
    rank 1 two uneven batches (6 + 2), so the weights n_rank / N differ."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(13, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (13,), generator=g)
    shards = [(x[:5], y[:5]), [(x[5:11], y[5:11]), (x[11:], y[11:])]]
    return model, nn.CrossEntropyLoss(), (x, y), shards


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, path: str, measure: Measure) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        np.savez(f"{path}/rank{rank}.partial.npz", **measure(rank, dist.group.WORLD))
        os.replace(f"{path}/rank{rank}.partial.npz", f"{path}/rank{rank}.npz")  # complete, or absent
    finally:
        dist.barrier()  # no rank tears the group down while another still exchanges data with it
        dist.destroy_process_group()


def sharded_results(measure: Measure, path: Path) -> list[dict[str, np.ndarray]]:
    """Run ``measure`` on two gloo ranks and return each rank's arrays."""
    try:
        mp.spawn(_rank_main, args=(_free_port(), str(path), measure), nprocs=2, join=True)
    except mp.ProcessExitedException as exc:
        # gloo aborts now and then while the process exits, after every rank has passed the final barrier
        # (about 1 run in 20 on a loaded 2-core machine); the results are complete only if the work finished
        if exc.signal_name != "SIGABRT" or not all((path / f"rank{r}.npz").exists() for r in range(2)):
            raise
    return [dict(np.load(path / f"rank{rank}.npz")) for rank in range(2)]
