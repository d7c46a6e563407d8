"""Hessian and GGN operators against dense float64 references (torch.func.hessian, explicit Jacobians)."""
import copy
import random

import numpy as np
import pytest
import scipy.sparse.linalg
import torch
from torch import nn

from theorylab.curvature import DenseOperator, as_operator, ggn, hessian, spectral_density, top_eigenvalues, trace

ATOL = 1e-12  # float64 products of O(1) numbers on tiny models: agreement to rounding


def _mlp(activation: str, seed: int = 0, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(seed)
    act = nn.Tanh() if activation == "tanh" else nn.ReLU()
    return nn.Sequential(nn.Linear(4, 4), act, nn.Linear(4, 3)).to(dtype)


def _data(loss: str, n: int = 11, seed: int = 1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (n,), generator=g) if loss == "ce" else torch.randn(n, 3, generator=g, dtype=dtype)
    return x, y


_LOSSES = {"ce": nn.CrossEntropyLoss(), "mse": nn.MSELoss()}


def _uneven(x, y):
    return [(x[:4], y[:4]), (x[4:9], y[4:9]), (x[9:], y[9:])]


def _reference_hessian(model, loss_fn, batches, names=None):
    """torch.func.hessian of the sample-weighted mean loss over ``batches``, in the flat parameters ``names``."""
    state = {n: t.detach().to(torch.float64) for n, t in model.named_parameters()}
    state.update({n: b.detach().clone() for n, b in model.named_buffers()})
    names = names or [n for n, _ in model.named_parameters()]
    shapes = [state[n].shape for n in names]
    flat = torch.cat([state[n].reshape(-1) for n in names])
    total = sum(len(y) for _, y in batches)

    def loss(theta):
        pieces = dict(zip(names, [t.view(s) for t, s in zip(theta.split([s.numel() for s in shapes]), shapes)]))
        return sum(len(y) / total * loss_fn(torch.func.functional_call(model, {**state, **pieces}, (x.double(),)),
                                             y.double() if y.is_floating_point() else y) for x, y in batches)

    return torch.func.hessian(loss)(flat)


@pytest.mark.parametrize("backend", ["double_backward", "forward_over_reverse"])
@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_hessian_matches_torch_func_hessian(activation, loss, backend):
    model, (x, y) = _mlp(activation), _data(loss)
    reference = _reference_hessian(model, _LOSSES[loss], [(x, y)])
    for data in [(x, y), _uneven(x, y)]:  # one cached batch, and uneven batches
        dense = hessian(model, _LOSSES[loss], data, backend=backend).to_dense()
        torch.testing.assert_close(dense, reference, atol=ATOL, rtol=0)


def test_float64_copies_of_a_float32_model():
    model, (x, y) = _mlp("tanh", dtype=torch.float32), _data("ce", dtype=torch.float32)
    op = hessian(model, nn.CrossEntropyLoss(), (x, y), dtype=torch.float64)
    assert op.dtype == torch.float64 and next(model.parameters()).dtype == torch.float32
    torch.testing.assert_close(op.to_dense(), _reference_hessian(model, nn.CrossEntropyLoss(), [(x, y)]),
                               atol=ATOL, rtol=0)


def test_products_of_vectors_matrices_dicts_and_numpy_agree():
    model, (x, y) = _mlp("tanh"), _data("ce")
    op = hessian(model, nn.CrossEntropyLoss(), _uneven(x, y))
    size = op.shape[0]
    assert op.shape == (size, size) == (sum(p.numel() for p in model.parameters()),) * 2
    assert op.device == torch.device("cpu") and op.dtype == torch.float64
    vectors = torch.randn(size, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    block = op @ vectors
    assert block.shape == (size, 3) and op.num_matvecs == 3
    for j in range(3):
        torch.testing.assert_close(op @ vectors[:, j], block[:, j], atol=ATOL, rtol=0)
    as_dict = op @ op.unflatten(vectors[:, 0])
    assert list(as_dict) == op.param_names and as_dict["0.weight"].shape == (4, 4)
    torch.testing.assert_close(op.flatten(as_dict), block[:, 0], atol=ATOL, rtol=0)
    np.testing.assert_allclose(op @ vectors.numpy(), block.numpy(), atol=ATOL, rtol=0)
    assert op.num_matvecs == 10
    scipy_op = op.to_scipy()
    top = scipy.sparse.linalg.eigsh(scipy_op, k=2, which="LA", return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(top), torch.linalg.eigvalsh(op.to_dense())[-2:].numpy(), rtol=1e-10)


@pytest.mark.parametrize("params, names", [("2.weight", ["2.weight"]),
                                           (["0.bias", "2"], ["0.bias", "2.weight", "2.bias"]),
                                           ("*.bias", ["0.bias", "2.bias"])])
def test_parameter_subsets_are_blocks_of_the_full_hessian(params, names):
    model, (x, y) = _mlp("tanh"), _data("mse")
    reference = _reference_hessian(model, nn.MSELoss(), [(x, y)], names=names)
    for backend in ["double_backward", "forward_over_reverse"]:
        op = hessian(model, nn.MSELoss(), _uneven(x, y), params=params, backend=backend)
        assert op.param_names == names
        torch.testing.assert_close(op.to_dense(), reference, atol=ATOL, rtol=0)


def _bn_model():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Tanh(), nn.Linear(3, 3)).double()
    with torch.no_grad():  # non-trivial running statistics
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("backend", ["double_backward", "forward_over_reverse"])
def test_batchnorm_eval_mode_uses_running_statistics(backend):
    model, (x, y) = _bn_model(), _data("ce")
    reference = _reference_hessian(model.eval(), nn.CrossEntropyLoss(), [(x, y)])
    model.train()  # the operator switches to eval itself
    op = hessian(model, nn.CrossEntropyLoss(), _uneven(x, y), mode="eval", backend=backend)
    torch.testing.assert_close(op.to_dense(), reference, atol=ATOL, rtol=0)
    assert model.training


@pytest.mark.parametrize("backend", ["double_backward", "forward_over_reverse"])
def test_batchnorm_train_mode_is_the_hessian_of_the_per_batch_train_loss(backend):
    model, (x, y) = _bn_model(), _data("ce")
    batches = [(x[:6], y[:6]), (x[6:], y[6:])]
    # reference: torch.autograd.functional.hessian (row by row, no vmap: train-mode BN writes its
    # running statistics in place, which vmap cannot trace; the batch-norm-free twin of
    # torch.func.replace_all_batch_norm_modules_ gives a non-symmetric torch.func.hessian here)
    twin = copy.deepcopy(model).train()
    names = [n for n, _ in twin.named_parameters()]
    shapes = [p.shape for p in twin.parameters()]

    def loss(theta):
        pieces = dict(zip(names, [t.view(s) for t, s in zip(theta.split([s.numel() for s in shapes]), shapes)]))
        return sum(len(yb) / len(y) * nn.CrossEntropyLoss()(torch.func.functional_call(
            twin, {**pieces, **{n: b.clone() for n, b in twin.named_buffers()}}, (xb,)), yb) for xb, yb in batches)

    reference = torch.autograd.functional.hessian(loss, torch.cat([p.detach().reshape(-1) for p in twin.parameters()]))
    eval_reference = _reference_hessian(copy.deepcopy(model).eval(), nn.CrossEntropyLoss(), batches)
    op = hessian(model.eval(), nn.CrossEntropyLoss(), batches, mode="train", backend=backend)
    dense = op.to_dense()
    torch.testing.assert_close(dense, reference, atol=ATOL, rtol=0)
    assert (dense - eval_reference).abs().max() > 1e-3  # train and eval mode differ on this model


def test_linear_regression_mse_hessian_is_2_xtx_over_n_times_outputs():
    """nn.MSELoss averages over the n samples and the k outputs: H = I_k (x) 2 X^T X / (n k)."""
    g = torch.Generator().manual_seed(0)
    n, d, k = 13, 4, 3
    x, y = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, k, generator=g, dtype=torch.float64)
    model = nn.Linear(d, k, bias=False).double()
    expected = torch.kron(torch.eye(k, dtype=torch.float64), 2 * x.T @ x / (n * k))  # W is flattened row-major
    for data in [(x, y), _uneven(x, y)]:
        torch.testing.assert_close(hessian(model, nn.MSELoss(), data).to_dense(), expected, atol=ATOL, rtol=0)
        torch.testing.assert_close(ggn(model, nn.MSELoss(), data).to_dense(), expected, atol=ATOL, rtol=0)


def test_ggn_equals_hessian_for_a_linear_model_with_mse():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(9, 4, generator=g, dtype=torch.float64), torch.randn(9, 2, generator=g, dtype=torch.float64)
    model = nn.Linear(4, 2).double()
    data = [(x[:5], y[:5]), (x[5:], y[5:])]
    torch.testing.assert_close(ggn(model, nn.MSELoss(), data).to_dense(),
                               hessian(model, nn.MSELoss(), data).to_dense(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_ggn_is_jt_hout_j_from_explicit_jacobians(loss):
    model, (x, y) = _mlp("tanh"), _data(loss)
    batches, loss_fn = _uneven(x, y), _LOSSES[loss]
    names = [n for n, _ in model.named_parameters()]
    state = {n: p.detach() for n, p in model.named_parameters()}
    shapes = [state[n].shape for n in names]
    flat = torch.cat([state[n].reshape(-1) for n in names])
    expected = torch.zeros(len(flat), len(flat), dtype=torch.float64)
    for xb, yb in batches:
        def outputs(theta, xb=xb):
            pieces = [t.view(s) for t, s in zip(theta.split([s.numel() for s in shapes]), shapes)]
            return torch.func.functional_call(model, dict(zip(names, pieces)), (xb,)).reshape(-1)

        out = outputs(flat)
        jac = torch.func.jacrev(outputs)(flat)  # (n_b * C, P)
        h_out = torch.func.hessian(lambda o, yb=yb: loss_fn(o.view(len(yb), 3), yb))(out)  # (n_b C, n_b C)
        expected += len(yb) / len(y) * jac.T @ h_out @ jac
    for data in [batches, (x, y)]:
        torch.testing.assert_close(ggn(model, loss_fn, data).to_dense(), expected, atol=ATOL, rtol=0)
    if loss == "ce":  # CE is convex in the logits: the GGN is positive semi-definite, the Hessian is not
        assert torch.linalg.eigvalsh(expected)[0] > -1e-12
        assert torch.linalg.eigvalsh(_reference_hessian(model, loss_fn, batches))[0] < -1e-6


def test_bad_input_gets_clear_errors():
    model, (x, y) = _mlp("tanh"), _data("ce")
    ce = nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match="scalar"):
        hessian(model, nn.CrossEntropyLoss(reduction="none"), (x, y))
    with pytest.raises(ValueError, match="scalar"):
        hessian(model, nn.CrossEntropyLoss(reduction="none"), _uneven(x, y)) @ torch.ones(35, dtype=torch.float64)
    with pytest.raises(ValueError, match="empty"):
        hessian(model, ce, (x[:0], y[:0]))
    with pytest.raises(ValueError, match="empty"):
        ggn(model, ce, [])
    with pytest.raises(ValueError, match="matched no parameter"):
        hessian(model, ce, (x, y), params="decoder")
    with pytest.raises(ValueError, match="backend"):
        hessian(model, ce, (x, y), backend="finite_difference")
    with pytest.raises(ValueError, match="mode"):
        hessian(model, ce, (x, y), mode="test")
    with pytest.raises(ValueError, match="dtype"):
        hessian(model, ce, (x, y), dtype=torch.int64)
    with pytest.raises(ValueError, match="length 35"):
        hessian(model, ce, (x, y)) @ torch.ones(5)
    with pytest.raises(ValueError, match="holds no tensor theorylab can use"):
        ggn(_DictModel(), ce, (x, y))
    with pytest.raises(ValueError, match="square"):
        DenseOperator(torch.ones(3, 4))
    with pytest.raises(ValueError, match="not symmetric"):
        as_operator(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="LinearOperator or a dense"):
        as_operator([[1.0]])


class _DictModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3).double()

    def forward(self, x):
        return {"scores": self.lin(x)}


def _snapshot(model):
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "buffers": {n: b.clone() for n, b in model.named_buffers()},
        "modes": [m.training for m in model.modules()],
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state()[1].copy(),
        "python_rng": random.getstate(),
    }


def _assert_same(before, after):
    for kind in ("params", "buffers"):
        for name, value in before[kind].items():
            assert torch.equal(value, after[kind][name]), f"{kind} {name} changed"
    assert before["modes"] == after["modes"]
    for name, grad in before["grads"].items():
        assert (grad is None and after["grads"][name] is None) or torch.equal(grad, after["grads"][name]), name
    assert torch.equal(before["torch_rng"], after["torch_rng"])
    assert np.array_equal(before["numpy_rng"], after["numpy_rng"]) and before["python_rng"] == after["python_rng"]


@pytest.mark.parametrize("mode", ["train", "keep"])
def test_no_side_effects_with_batchnorm_and_dropout(mode):
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Dropout(0.3), nn.Linear(4, 2))
    model.train()
    model[1].eval()  # mixed modes must come back as they were
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(9, 3, generator=g), torch.randint(0, 2, (9,), generator=g)
    batches = [(x[:5], y[:5]), (x[5:], y[5:])]
    model[0].weight.grad = torch.full_like(model[0].weight, 0.5)  # an existing gradient stays untouched
    before = _snapshot(model)
    ce = nn.CrossEntropyLoss()
    operators = [hessian(model, ce, (x, y), mode=mode), hessian(model, ce, batches, mode=mode),
                 hessian(model, ce, batches, mode=mode, backend="forward_over_reverse", dtype=torch.float64),
                 ggn(model, ce, (x, y), mode=mode), ggn(model, ce, batches, mode=mode, dtype=torch.float64)]
    for op in operators:
        op @ torch.ones(op.shape[0], 2)
        top_eigenvalues(op, k=2, max_steps=4)
        trace(op, num_probes=6, method="hutch++")
        spectral_density(op, num_steps=3, num_probes=1)
        _assert_same(before, _snapshot(model))


def test_train_mode_dropout_hessian_agrees_between_backends():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Dropout(0.5), nn.Linear(6, 3)).double()
    x, y = _data("ce")
    first = hessian(model, nn.CrossEntropyLoss(), _uneven(x, y), mode="train").to_dense()
    second = hessian(model, nn.CrossEntropyLoss(), _uneven(x, y), mode="train",
                     backend="forward_over_reverse").to_dense()
    torch.testing.assert_close(first, second, atol=ATOL, rtol=0)
    torch.testing.assert_close(first, first.T, atol=ATOL, rtol=0)  # dropout masks fixed per operator
    evaluated = hessian(model, nn.CrossEntropyLoss(), _uneven(x, y), mode="eval").to_dense()
    assert (first - evaluated).abs().max() > 1e-3  # dropout is active in train mode
