"""Sharded data over 2 gloo processes on CPU gives the single-process full-data Fisher, empirical Fisher,
K-FAC, loss surface and interpolation path."""
import copy

import numpy as np
import pytest
import torch
import torch.distributed as dist

from gloo_ranks import sharded_problem, sharded_results
from theorylab.curvature import empirical_fisher, fisher, kfac
from theorylab.landscape import linear_interpolation, loss_surface


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


def _sharded_measure(rank, group):
    model, loss, _, shards = sharded_problem()
    return _measure(model, loss, shards[rank], group)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_two_gloo_ranks_equal_a_single_process_on_all_data(tmp_path):
    ranks = sharded_results(_sharded_measure, tmp_path)
    model, loss, full, _ = sharded_problem()
    single = _measure(model, loss, full)
    for rank, sharded in enumerate(ranks):
        for key, expected in single.items():
            np.testing.assert_allclose(sharded[key], expected, rtol=1e-10, atol=1e-12, err_msg=f"rank {rank}: {key}")
