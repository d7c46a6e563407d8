"""Products with a block of vectors: batched (vmapped backward) and looped products agree with
single products to rounding in float64, in every mode, without copies of row-major blocks."""
import pytest
import torch
from torch import nn

from theorylab.curvature import ggn, hessian, trace
from theorylab.curvature import blocks
from theorylab.curvature.blocks import BlockProducts


def _problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(11, 4, generator=g, dtype=torch.float64)
    return model, x, torch.randint(0, 3, (11,), generator=g), torch.randn(11, 3, generator=g, dtype=torch.float64)


def _operators():
    model, x, labels, targets = _problem()
    ce, mse = nn.CrossEntropyLoss(), nn.MSELoss()
    batches = [(x[:6], labels[:6]), (x[6:], labels[6:])]
    return {
        "hessian cached graph": hessian(model, ce, (x, labels)),
        "hessian per batch": hessian(model, ce, batches),
        "hessian mse": hessian(model, mse, (x, targets)),
        "hessian forward-over-reverse": hessian(model, ce, batches, backend="forward_over_reverse"),
        "ggn cached graph": ggn(model, ce, (x, labels)),
        "ggn per batch": ggn(model, mse, [(x[:6], targets[:6]), (x[6:], targets[6:])]),
    }


@pytest.mark.parametrize("mode", ["loop", "batched", "auto"])
@pytest.mark.parametrize("name", list(_operators()))
def test_block_products_equal_single_products(name, mode, monkeypatch):
    monkeypatch.setattr(blocks, "CHOICES", {})  # no choice remembered: "auto" measures
    op = _operators()[name]
    rows = torch.randn(6, op.shape[0], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    single = torch.stack([op @ row for row in rows])  # (6, P)
    op.block_products.mode = mode
    block = op @ rows.T  # (P, 6), passed as a view of the rows
    scale = float(single.abs().max())
    torch.testing.assert_close(block.T, single, atol=1e-12 * scale, rtol=0)
    if mode == "auto" and "forward" not in name:
        assert op.block_products.choice in ("loop", "batched")  # measured on the first block of 6
    assert op.num_matvecs == 12


def test_block_products_of_a_column_major_block_and_of_numpy_input():
    op = _operators()["ggn cached graph"]
    op.block_products.mode = "batched"
    columns = torch.randn(op.shape[0], 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    single = torch.stack([op @ c for c in columns.T.contiguous()], dim=1)
    torch.testing.assert_close(op @ columns, single, atol=1e-12 * float(single.abs().max()), rtol=0)
    torch.testing.assert_close(torch.from_numpy(op @ columns.numpy()), single, atol=1e-12 * float(single.abs().max()),
                               rtol=0)


def test_dense_matrix_from_batched_products_is_the_dense_matrix_from_single_products():
    op = _operators()["hessian per batch"]
    op.block_products.mode = "loop"
    looped = op.to_dense()
    op.block_products.mode = "batched"
    torch.testing.assert_close(op.to_dense(), looped, atol=1e-12 * float(looped.abs().max()), rtol=0)


class _CubeGrad(torch.autograd.Function):
    """The derivative of x^3, with a second derivative that reads a number on the host (not vmappable)."""

    @staticmethod
    def forward(ctx, x, g):
        ctx.save_for_backward(x, g)
        return 3 * x * x * g

    @staticmethod
    def backward(ctx, h):
        x, g = ctx.saved_tensors
        one = float(h.abs().max()) * 0 + 1.0
        return 6 * x * g * h * one, 3 * x * x * h


class _Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return _CubeGrad.apply(x, g)


class _CubeModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, x):
        return _Cube.apply(self.linear(x))


def test_a_backward_pass_vmap_cannot_batch_falls_back_to_the_loop(monkeypatch):
    monkeypatch.setattr(blocks, "CHOICES", {})  # no choice remembered: "auto" tries the batched pass
    torch.manual_seed(1)
    model = _CubeModel().double()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g, dtype=torch.float64)
    op = hessian(model, nn.MSELoss(), (x, y))
    rows = torch.randn(6, op.shape[0], generator=g, dtype=torch.float64)
    single = torch.stack([op @ row for row in rows])
    op.block_products.mode = "batched"
    with pytest.raises(RuntimeError, match="item"):
        op @ rows.T
    op.block_products.mode = "auto"
    torch.testing.assert_close((op @ rows.T).T, single, atol=1e-12, rtol=0)
    assert op.block_products.choice == "loop"


def test_the_measured_choice_is_remembered_for_the_problem(monkeypatch):
    monkeypatch.setattr(blocks, "CHOICES", {})
    first, second = _operators()["hessian cached graph"], _operators()["hessian cached graph"]
    assert first.block_products.choice is None
    rows = torch.randn(6, first.shape[0], generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    products = first @ rows.T
    choice = first.block_products.choice
    assert choice in ("loop", "batched") and blocks.CHOICES[first.block_products.problem] == choice
    monkeypatch.setattr(BlockProducts, "_measure", lambda *args: pytest.fail("measured the same problem again"))
    assert torch.equal(second @ rows.T, products)  # bitwise the same products
    assert second.block_products.choice == choice
    other_data = _operators()["hessian mse"]
    assert other_data.block_products.problem != first.block_products.problem


def test_trace_is_the_same_with_looped_and_batched_products():
    op = _operators()["hessian cached graph"]
    op.block_products.mode = "loop"
    looped = trace(op, num_probes=30, method="hutch++", seed=1)
    op.block_products.mode = "batched"
    batched = trace(op, num_probes=30, method="hutch++", seed=1)
    assert batched.estimate == pytest.approx(looped.estimate, rel=1e-12, abs=1e-12)


def test_bad_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="block products mode"):
        BlockProducts("vmap")
    op = _operators()["hessian cached graph"]
    with pytest.raises(ValueError, match="block products mode"):
        op.block_products.mode = "fast"
