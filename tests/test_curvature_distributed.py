"""Sharded data over 2 gloo processes on CPU gives the single-process full-data operator, estimates, NTK and
analyzers."""
import numpy as np
import pytest
import torch
import torch.distributed as dist

from gloo_ranks import sharded_problem, sharded_results
from theorylab.batches import iter_batches
from theorylab.curvature import ggn, hessian, spectral_density, top_eigenvalues, trace
from theorylab.gradients import gradient_statistics
from theorylab.kernels import empirical_ntk, empirical_ntk_blocks
from theorylab.metrics import accuracy, mean_loss
from theorylab.representations import dormant_ratio
from theorylab.sharpness import adaptive_sharpness, average_sharpness, lambda_max, sam_sharpness


def _inputs(data):
    return torch.cat([x for x, _ in iter_batches(data)])


def _cross_inputs(data):
    """A second input set: on each rank (and for one process, of each shard in rank order) 3 points."""
    return _inputs(data)[:3] * 2


def _measure(model, loss, data, cross, group=None):
    h = hessian(model, loss, data, process_group=group)
    h_forward = hessian(model, loss, data, backend="forward_over_reverse", process_group=group)
    g = ggn(model, loss, data, process_group=group)
    probes = torch.randn(h.shape[0], 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return {
        "ntk": empirical_ntk(model, _inputs(data), block_size=4, process_group=group).kernel,
        "ntk_cross": empirical_ntk_blocks(model, _inputs(data), cross, process_group=group).blocks,
        "hessian": (h @ probes).numpy(), "hessian_forward": (h_forward @ probes).numpy(), "ggn": (g @ probes).numpy(),
        "top": top_eigenvalues(h, 2, tol=1e-10).values,
        "trace": np.array([trace(h, num_probes=12, method="hutch++", seed=3).estimate]),
        "slq": spectral_density(h, num_steps=6, num_probes=2, seed=4).nodes,
        **_analyzers(model, loss, data, group),
    }


def _analyzers(model, loss, data, group):
    """Analyzers of the data (sums over batches and ranks): each rank gets the numbers of all the data."""
    stats = gradient_statistics(model, loss, data, chunk_size=3, process_group=group)
    return {
        "lambda_max": np.array([lambda_max(model, loss, data, tol=1e-10, process_group=group).value]),
        "sam": np.array([sam_sharpness(model, loss, data, rho=0.05, process_group=group).value]),
        "average": np.array([average_sharpness(model, loss, data, rho=0.05, num_draws=4, process_group=group).value]),
        "adaptive": np.array([adaptive_sharpness(model, loss, data, rho=0.05, steps=2, process_group=group).value]),
        "loss": np.array([mean_loss(model, loss, data, process_group=group),
                          accuracy(model, data, process_group=group)]),
        "gradients": np.array([stats.coherence, stats.trace_cov, stats.grad_norm_sq, stats.num_examples]),
        "dormant": dormant_ratio(model, data, layers="1", tau=0.9, process_group=group).scores["1"],
    }


def _sharded_measure(rank, group):
    model, loss, _, shards = sharded_problem()
    return _measure(model, loss, shards[rank], _cross_inputs(shards[rank]), group)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_two_gloo_ranks_equal_a_single_process_on_all_data(tmp_path):
    ranks = sharded_results(_sharded_measure, tmp_path)
    model, loss, full, shards = sharded_problem()
    single = _measure(model, loss, full, torch.cat([_cross_inputs(shard) for shard in shards]))
    for rank, sharded in enumerate(ranks):
        for key, expected in single.items():
            np.testing.assert_allclose(sharded[key], expected, rtol=1e-10, atol=1e-12, err_msg=f"rank {rank}: {key}")
