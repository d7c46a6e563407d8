"""Sharded data over 2 gloo processes on CPU gives the single-process full-data Fisher, empirical Fisher,
K-FAC, loss surface and interpolation path."""
import copy
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from theorylab.curvature import empirical_fisher, fisher, kfac
from theorylab.landscape import linear_interpolation, loss_surface


def _problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(13, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (13,), generator=g)
    # rank 0: one batch of 5 samples; rank 1: two uneven batches (6 + 2): weights n_rank / N differ
    shards = [(x[:5], y[:5]), [(x[5:11], y[5:11]), (x[11:], y[11:])]]
    return model, nn.CrossEntropyLoss(), (x, y), shards


def _measure(model, loss, data, group=None):
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(-0.5)
    probes = torch.randn(sum(p.numel() for p in model.parameters()), 3, generator=torch.Generator().manual_seed(2),
                         dtype=torch.float64)
    return {
        "fisher": (fisher(model, loss, data, process_group=group) @ probes).numpy(),
        "empirical_fisher": (empirical_fisher(model, loss, data, process_group=group) @ probes).numpy(),
        "kfac": (kfac(model, loss, data, process_group=group) @ probes).numpy(),
        "surface": loss_surface(model, loss, data, num_points=3, process_group=group).losses,
        "interpolation": linear_interpolation(model, other, loss, data, num_points=3, process_group=group).losses,
    }


def _worker(rank, port, path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        model, loss, _, shards = _problem()
        np.savez(f"{path}/rank{rank}.npz", **_measure(model, loss, shards[rank], dist.group.WORLD))
    finally:
        dist.barrier()  # no rank tears the group down while another still exchanges data with it
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_two_gloo_ranks_equal_a_single_process_on_all_data(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    model, loss, full, _ = _problem()
    single = _measure(model, loss, full)
    for rank in range(2):
        sharded = np.load(tmp_path / f"rank{rank}.npz")
        for key, expected in single.items():
            np.testing.assert_allclose(sharded[key], expected, rtol=1e-10, atol=1e-12, err_msg=f"rank {rank}: {key}")
