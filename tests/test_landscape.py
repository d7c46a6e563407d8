"""Loss surfaces, interpolation and weight matching against exact references: the slice at the origin
is the loss, a quadratic loss equals its quadratic model everywhere, the curvature along a Hessian
eigenvector is its eigenvalue, filter normalisation has the weights' filter norms, a planted permutation
is recovered exactly and removes the barrier, batched and looped evaluation agree."""
import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from theorylab.alignment import chain_spec, random_permutation, weight_matching
from theorylab.curvature import hessian
from theorylab.landscape import linear_interpolation, loss_surface, random_direction
from theorylab.metrics import mean_loss
from theorylab.models import MLP, SmallCNN
from theorylab.results import Result


def _mlp_case(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(13, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (13,), generator=g)
    return model, nn.CrossEntropyLoss(), [(x[:6], y[:6]), (x[6:], y[6:])]


def test_slice_at_the_origin_is_the_loss_and_the_quadratic_model_touches_it():
    model, loss, data = _mlp_case()
    surface = loss_surface(model, loss, data, num_points=5, span=(-0.5, 0.5))
    assert surface.losses.shape == (5, 5)
    reference = mean_loss(model, loss, data)
    assert surface.losses[2, 2] == pytest.approx(reference, rel=1e-13)
    assert surface.center_loss == pytest.approx(reference, rel=1e-13)
    assert surface.quadratic_model()[2, 2] == pytest.approx(reference, rel=1e-13)
    # every grid value is the loss of the shifted model
    d1, d2 = (random_direction(model, seed=s) for s in (0, 1))
    shifted = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in shifted.named_parameters():
            p.add_(0.5 * d1[n] - 0.25 * d2[n])
    assert surface.losses[4, 1] == pytest.approx(mean_loss(shifted, loss, data), rel=1e-12)
    assert Result.from_dict(surface.to_dict()) == surface


def test_a_quadratic_loss_equals_its_quadratic_model_everywhere():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 5, generator=g, dtype=torch.float64), torch.randn(20, 2, generator=g, dtype=torch.float64)
    model = nn.Linear(5, 2).double()
    surface = loss_surface(model, nn.MSELoss(), (x, y), directions="layer", span=(-2, 3), num_points=7)
    np.testing.assert_allclose(surface.losses, surface.quadratic_model(), rtol=1e-12, atol=1e-12)
    one = loss_surface(model, nn.MSELoss(), (x, y), num_directions=1, directions="layer", num_points=9)
    np.testing.assert_allclose(one.losses, one.quadratic_model(), rtol=1e-12, atol=1e-12)


def test_curvature_along_hessian_eigenvectors_is_the_eigenvalue():
    model, loss, data = _mlp_case()
    eigenvalues = torch.linalg.eigvalsh(hessian(model, loss, data).to_dense()).flip(0)[:2].numpy()
    surface = loss_surface(model, loss, data, directions="hessian", num_points=5, span=(-1e-3, 1e-3))
    np.testing.assert_allclose(np.diag(surface.curvature), eigenvalues, rtol=1e-7)
    np.testing.assert_allclose(surface.eigenvalues, eigenvalues, rtol=1e-7)
    assert abs(surface.curvature[0, 1]) < 1e-7 * eigenvalues[0]
    np.testing.assert_allclose(surface.direction_norms, 1.0, rtol=1e-12)
    # the measured slice agrees: second difference along d_1 at step h
    h = surface.coordinates[0][1] - surface.coordinates[0][0]
    second = (surface.losses[3, 2] - 2 * surface.losses[2, 2] + surface.losses[1, 2]) / h ** 2
    assert second == pytest.approx(eigenvalues[0], rel=1e-4)


def test_filter_normalised_directions():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 4)).double()
    d = random_direction(model, seed=5)
    for name, w in model.named_parameters():
        if w.dim() > 1:
            np.testing.assert_allclose(d[name].reshape(len(w), -1).norm(dim=1).numpy(),
                                       w.detach().reshape(len(w), -1).norm(dim=1).numpy(), rtol=1e-12)
        else:
            assert not d[name].any()
    layer = random_direction(model, seed=5, normalization="layer")
    for name, w in model.named_parameters():
        assert float(layer[name].norm()) == pytest.approx(float(w.detach().norm()), rel=1e-12)
    assert torch.equal(random_direction(model, seed=5)["0.weight"], d["0.weight"])


def test_batched_looped_and_chunked_evaluation_agree():
    model, loss, data = _mlp_case()
    full = loss_surface(model, loss, data, num_points=4)
    chunked = loss_surface(model, loss, data, num_points=4, points_per_pass=3)
    np.testing.assert_allclose(chunked.losses, full.losses, rtol=1e-13)

    class NoVmap(nn.Module):  # .item() cannot run under vmap: the loop fallback
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            out = self.inner(x)
            return out * (1.0 + 0.0 * float(out.sum().item()))

    wrapped = NoVmap(model)
    with pytest.warns(RuntimeWarning, match="evaluated one at a time"):
        looped = loss_surface(wrapped, loss, data, num_points=4)
    np.testing.assert_allclose(looped.losses, full.losses, rtol=1e-13)


def test_interpolation_endpoints_barrier_and_convexity():
    model, loss, data = _mlp_case(0)
    other, _, _ = _mlp_case(1)
    result = linear_interpolation(model, other, loss, data, num_points=11)
    assert result.endpoint_losses[0] == pytest.approx(mean_loss(model, loss, data), rel=1e-13)
    assert result.endpoint_losses[1] == pytest.approx(mean_loss(other, loss, data), rel=1e-13)
    excess = result.losses - (1 - result.alphas) * result.losses[0] - result.alphas * result.losses[-1]
    assert result.barrier == pytest.approx(excess.max(), rel=1e-12)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 5, generator=g, dtype=torch.float64), torch.randn(20, 2, generator=g, dtype=torch.float64)
    convex = linear_interpolation(nn.Linear(5, 2).double(), nn.Linear(5, 2).double(), nn.MSELoss(), (x, y))
    assert convex.barrier <= 1e-12  # a convex loss lies below its chord
    assert Result.from_dict(result.to_dict()) == result


def test_interpolation_moves_batchnorm_statistics_too():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double().eval()
    b = copy.deepcopy(a)
    with torch.no_grad():
        b[1].running_mean.fill_(1.0)
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
    result = linear_interpolation(a, b, nn.MSELoss(), (x, y), num_points=3)
    middle = copy.deepcopy(a)
    with torch.no_grad():
        middle[1].running_mean.copy_((a[1].running_mean + b[1].running_mean) / 2)
    assert result.losses[1] == pytest.approx(mean_loss(middle, nn.MSELoss(), (x, y)), rel=1e-13)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "bn_cnn", "theorylab_mlp"])
def test_weight_matching_recovers_a_planted_permutation_and_removes_the_barrier(kind):
    torch.manual_seed(0)
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 16), nn.LayerNorm(16), nn.ReLU(),
                              nn.Linear(16, 3)).double()
        x = torch.randn(10, 5, dtype=torch.float64)
    elif kind == "cnn":
        model = SmallCNN(in_channels=2, num_classes=3, width=4, seed=0).double()
        x = torch.randn(10, 2, 8, 8, dtype=torch.float64)
    elif kind == "bn_cnn":
        model = nn.Sequential(nn.Conv2d(2, 5, 3), nn.BatchNorm2d(5), nn.ReLU(), nn.Flatten(),
                              nn.Linear(5 * 4 * 4, 3)).double()
        with torch.no_grad():
            model[1].running_mean.uniform_(-1, 1)
            model[1].running_var.uniform_(0.5, 2)
        model.eval()
        x = torch.randn(10, 2, 6, 6, dtype=torch.float64)
    else:
        model = MLP(5, [12, 12], 3, seed=0).double()
        x = torch.randn(10, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (10,))
    planted = random_permutation(model, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(planted(x), model(x), atol=1e-12, rtol=0)  # the same function
    assert any(not torch.equal(p, q) for p, q in zip(planted.parameters(), model.parameters()))
    before = linear_interpolation(model, planted, nn.CrossEntropyLoss(), (x, y), num_points=5)
    result = weight_matching(model, planted, data=(x, y))
    aligned = result.apply(planted)
    for (name, p), q in zip(model.state_dict().items(), aligned.state_dict().values()):
        assert torch.equal(p, q), name
    assert result.converged and result.objective[-1] >= result.objective[0]
    after = linear_interpolation(model, aligned, nn.CrossEntropyLoss(), (x, y), num_points=5)
    assert np.ptp(before.losses) > 1e-3  # the straight path between permuted copies leaves the function
    assert np.ptp(after.losses) < 1e-12 and abs(after.barrier) < 1e-12  # aligned: one point
    assert Result.from_dict(result.to_dict()) == result


def test_a_spec_that_is_not_a_symmetry_is_caught_on_data():
    class Residual(nn.Module):  # registered as a chain, but the skip connection ties the two permutations
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            h = torch.tanh(self.a(x))
            return self.c(h + torch.tanh(self.b(h)))

    torch.manual_seed(0)
    model = Residual().double()
    x = torch.randn(6, 4, dtype=torch.float64)
    assert set(chain_spec(model)) == {"P0", "P1"}
    with pytest.raises(ValueError, match="not a symmetry of the model"):
        weight_matching(model, copy.deepcopy(model), data=(x, torch.zeros(6)))


def test_chain_spec_and_clear_errors():
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).double()
    spec = chain_spec(model)
    assert spec == {"P0": [("0.weight", 0, 1), ("0.bias", 0, 1), ("1.weight", 0, 1), ("1.bias", 0, 1),
                           ("1.running_mean", 0, 1), ("1.running_var", 0, 1), ("3.weight", 1, 1)]}
    with pytest.raises(ValueError, match="at least two linear"):
        chain_spec(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="pass spec="):
        chain_spec(nn.Sequential(nn.Linear(4, 6), nn.Embedding(3, 2), nn.Linear(6, 3)))
    with pytest.raises(ValueError, match="same architecture"):
        weight_matching(model, nn.Sequential(nn.Linear(4, 7), nn.BatchNorm1d(7), nn.Tanh(), nn.Linear(7, 3)))
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.randint(0, 3, (5,))
    with pytest.raises(ValueError, match="differ in their tensors"):
        linear_interpolation(model, nn.Linear(4, 3).double(), nn.CrossEntropyLoss(), (x, y))
    with pytest.raises(ValueError, match="span must be"):
        loss_surface(model, nn.CrossEntropyLoss(), (x, y), span=(1, -1))
    with pytest.raises(ValueError, match="directions must be one of"):
        loss_surface(model, nn.CrossEntropyLoss(), (x, y), directions="pca")
    with pytest.raises(ValueError, match="num_directions must be 1 or 2"):
        loss_surface(model, nn.CrossEntropyLoss(), (x, y), num_directions=3)
    with pytest.raises(ValueError, match="points_per_pass"):
        loss_surface(model, nn.CrossEntropyLoss(), (x, y), points_per_pass=0)
    with pytest.raises(ValueError, match="normalization must be one of"):
        random_direction(model, normalization="unit")
