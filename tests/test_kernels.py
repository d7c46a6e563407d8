"""Empirical NTK against exact references; analytic kernels against Monte Carlo and quadrature."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate
from torch import nn

from theorylab.kernels import analytic_nngp, analytic_ntk, empirical_ntk, empirical_ntk_blocks
from theorylab.models import MLP


def explicit_ntk(model, x1, x2):
    """J(x1) J(x2)^T from the dense Jacobian of the flattened parameter vector (float64), (N1, N2, O, O)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])

    def f(vec, x):
        params, i = {}, 0
        for n, s in zip(names, shapes):
            params[n] = vec[i:i + s.numel()].view(s)
            i += s.numel()
        return torch.func.functional_call(model, params, (x,)).reshape(x.shape[0], -1)

    j1 = torch.autograd.functional.jacobian(lambda v: f(v, x1), flat)  # (N1, O, P)
    j2 = torch.autograd.functional.jacobian(lambda v: f(v, x2), flat)
    return torch.einsum("aip,bjp->abij", j1, j2)


class Shared(nn.Module):
    """One hidden layer applied twice (weight sharing): f(x) = W2 tanh(W1 tanh(W1 x))."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(torch.tanh(self.inner(torch.tanh(self.inner(x)))))


@pytest.fixture
def x64():
    g = torch.Generator().manual_seed(0)
    return torch.randn(7, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)


def _blocks(*args, **kwargs):
    return torch.from_numpy(empirical_ntk_blocks(*args, **kwargs).blocks)


def _kernel(*args, **kwargs):
    return torch.from_numpy(empirical_ntk(*args, **kwargs).kernel)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_model_ntk_is_gram_matrix_times_identity(bias, x64):
    x1, x2 = x64
    model = nn.Linear(4, 3, bias=bias).double()
    gram = x1 @ x2.T + (1.0 if bias else 0.0)
    expected = gram[:, :, None, None] * torch.eye(3, dtype=torch.float64)
    for method in ("auto", "jacobian", "ntk_vp"):
        torch.testing.assert_close(_blocks(model, x1, x2, method=method), expected, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(_kernel(model, x1, x2, method=method), gram, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(_kernel(model, x1, x2, reduction="sum", method=method), 3 * gram, rtol=1e-13,
                                   atol=1e-13)


@pytest.mark.parametrize("model_fn", [
    lambda: MLP(4, [6, 5], 3, activation="tanh", parametrization="ntk", bias_var=0.25, seed=1).double(),
    lambda: MLP(4, [6], 2, activation="gelu", parametrization="mup", seed=2).double(),
    lambda: Shared().double(),
])
@pytest.mark.parametrize("method", ["auto", "jacobian", "ntk_vp"])
@pytest.mark.parametrize("block_size", [2, 64])
def test_methods_equal_explicit_jacobian_product(model_fn, method, block_size, x64):
    torch.manual_seed(0)
    model = model_fn()
    x1, x2 = x64
    reference = explicit_ntk(model, x1, x2)
    full = _blocks(model, x1, x2, method=method, block_size=block_size)
    torch.testing.assert_close(full, reference, rtol=1e-12, atol=1e-12)
    trace = reference.diagonal(dim1=2, dim2=3).sum(-1)
    torch.testing.assert_close(_kernel(model, x1, x2, reduction="sum", method=method, block_size=block_size),
                               trace, rtol=1e-12, atol=1e-12)
    # symmetric case: only the upper block triangle is computed, then mirrored
    sym = _blocks(model, x1, method=method, block_size=block_size)
    torch.testing.assert_close(sym, explicit_ntk(model, x1, x1), rtol=1e-12, atol=1e-12)


def test_parameter_selection_gives_readout_kernel(x64):
    x1, _ = x64
    model = MLP(4, [8], 2, parametrization="ntk", weight_var=1.5 ** 2, bias_var=0.7 ** 2, seed=0).double()
    h = model.features(x1).detach()
    expected = 1.5 ** 2 * h @ h.T / 8 + 0.7 ** 2
    for method in ("auto", "jacobian"):
        torch.testing.assert_close(_kernel(model, x1, params="readout", method=method), expected, rtol=1e-12,
                                   atol=1e-12)
    weight_only = _kernel(model, x1, params="readout.weight")
    torch.testing.assert_close(weight_only, expected - 0.7 ** 2, rtol=1e-12, atol=1e-12)
    bias_only = _kernel(model, x1, params="readout.bias")
    torch.testing.assert_close(bias_only, torch.full_like(expected, 0.7 ** 2), rtol=1e-12, atol=1e-12)


def test_dtype_option_and_float32_agreement(x64):
    x1, _ = x64
    model = MLP(4, [16], 2, seed=0)
    k64 = empirical_ntk(model, x1, dtype=torch.float64)
    assert k64.kernel.dtype == np.float64 and k64.meta["dtype"] == "torch.float64"
    k32 = empirical_ntk(model, x1.float()).kernel
    assert k32.dtype == np.float32
    np.testing.assert_allclose(k32, k64.kernel, rtol=1e-5, atol=1e-5)


def test_model_is_left_exactly_as_found(x64):
    x1, _ = x64
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Dropout(0.5), nn.ReLU(), nn.Linear(6, 2)).double()
    model.train()
    model(x1).sum().backward()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    k = _kernel(model, x1, method="ntk_vp")
    k2 = _kernel(model, x1)
    torch.testing.assert_close(k, k2, rtol=1e-12, atol=1e-12)  # eval mode: dropout off, BN running stats
    assert all(m.training for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert torch.equal(torch.get_rng_state(), rng)


def test_bad_input_is_rejected_clearly(x64):
    x1, _ = x64
    model = nn.Linear(4, 2).double()
    with pytest.raises(ValueError, match="per-example shape"):
        empirical_ntk(model, x1, torch.zeros(3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="empirical_ntk_blocks"):
        empirical_ntk(model, x1, reduction="none")
    with pytest.raises(ValueError, match="method"):
        empirical_ntk(model, x1, method="hooks")
    with pytest.raises(ValueError, match="block_size"):
        empirical_ntk(model, x1, block_size=0)
    with pytest.raises(ValueError, match="memory_budget"):
        empirical_ntk(model, x1, memory_budget=-1)
    with pytest.raises(ValueError, match="matched no parameter"):
        empirical_ntk(model, x1, params="encoder")
    with pytest.raises(ValueError, match="no parameters"):
        empirical_ntk(nn.Sequential(nn.ReLU()), x1)
    with pytest.raises(ValueError, match="at least one example"):
        empirical_ntk(model, x1[:0])
    with pytest.raises(ValueError, match="tensor of inputs"):
        empirical_ntk(model, [1, 2])
    with pytest.raises(ValueError, match="shared by all"):
        empirical_ntk(model, (x1, x1[:3]))
    with pytest.raises(ValueError, match="leading dimension"):
        empirical_ntk(model, x1, output=lambda out: out.sum(0))


# ---------------------------------------------------------------------------------------------
# Analytic kernels
# ---------------------------------------------------------------------------------------------
def _inputs(n=4, d=3, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_one_hidden_layer_kernels_match_monte_carlo(activation):
    """With one hidden layer the finite-width expectations are exact at any width, so the Monte
    Carlo mean over independent networks must agree within its own standard error (4.5 sigma)."""
    x = _inputs()
    sw2, sb2, width, nets = 1.7, 0.3, 256, 120
    ntks, nngps = [], []
    for seed in range(nets):
        model = MLP(3, [width], 1, activation=activation, parametrization="ntk", weight_var=sw2,
                    bias_var=sb2, seed=seed).double()
        ntks.append(torch.from_numpy(empirical_ntk(model, x).kernel))
        h = model.features(x).detach()
        nngps.append(sw2 * h @ h.T / width + sb2)
    for samples, exact in [(torch.stack(ntks), analytic_ntk(x, depth=1, activation=activation, weight_var=sw2, bias_var=sb2)),
                           (torch.stack(nngps), analytic_nngp(x, depth=1, activation=activation, weight_var=sw2, bias_var=sb2))]:
        mean, stderr = samples.mean(0), samples.std(0) / math.sqrt(nets)
        assert (stderr < 0.02 * exact.abs().max()).all()  # the test has power
        assert ((mean - exact).abs() <= 4.5 * stderr + 1e-12).all(), (mean - exact) / stderr


def _gauss_expect_relu(s11, s12, s22, derivative):
    """E[g(u) g(v)] for relu (g = relu or its step derivative) by 1-D quadrature over the angle.

    With (u, v) = (a.z, b.z), z ~ N(0, I_2) in polar form, the radial integral is closed
    (int r^3 e^{-r^2/2} dr = 2, int r e^{-r^2/2} dr = 1), leaving an angular integral over the
    wedge where u, v > 0."""
    chol = np.linalg.cholesky(np.array([[s11, s12], [s12, s22]]))
    a, b = chol[0], chol[1]

    def integrand(theta):
        e = np.array([np.cos(theta), np.sin(theta)])
        u, v = a @ e, b @ e
        if u <= 0 or v <= 0:
            return 0.0
        return 1.0 if derivative else 2.0 * u * v

    breaks = sorted({(math.atan2(-w[0], w[1]) + k * math.pi) % (2 * math.pi) for w in (a, b) for k in (0, 1)})
    return integrate.quad(integrand, 0, 2 * math.pi, points=breaks, limit=200, epsabs=1e-13, epsrel=1e-12)[0] / (2 * math.pi)


def _gauss_expect_erf(s11, s12, s22, derivative, n=80):
    z, w = np.polynomial.hermite.hermgauss(n)
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    weights = np.outer(w, w) / math.pi
    chol = np.linalg.cholesky(np.array([[s11, s12], [s12, s22]]))
    u = math.sqrt(2) * chol[0, 0] * z1
    v = math.sqrt(2) * (chol[1, 0] * z1 + chol[1, 1] * z2)
    if derivative:
        g = lambda t: 2 / math.sqrt(math.pi) * np.exp(-t ** 2)  # noqa: E731
    else:
        from scipy.special import erf as g
    return float((weights * g(u) * g(v)).sum())


def _gauss_expect_1d(activation, s, derivative):
    """E[g(u)^2] for u ~ N(0, s) by adaptive quadrature."""
    from scipy.special import erf

    funcs = {("relu", False): lambda u: max(u, 0.0), ("relu", True): lambda u: float(u > 0),
             ("erf", False): erf, ("erf", True): lambda u: 2 / math.sqrt(math.pi) * math.exp(-u * u)}
    g = funcs[(activation, derivative)]
    density = lambda u: math.exp(-u * u / (2 * s)) / math.sqrt(2 * math.pi * s)  # noqa: E731
    return sum(integrate.quad(lambda u: g(u) ** 2 * density(u), lo, hi, epsabs=1e-14, epsrel=1e-12)[0]
               for lo, hi in [(-math.inf, 0.0), (0.0, math.inf)])


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_deep_recursion_matches_numerical_integration(activation):
    """Three hidden layers: the recursion of Arora et al. 2019 (Eqs. 9-11) with every Gaussian
    expectation done by numerical integration instead of the closed forms."""
    x = _inputs(3, 5, seed=1)
    sw2, sb2, depth = 1.6, 0.2, 3
    expect = _gauss_expect_relu if activation == "relu" else _gauss_expect_erf
    xn = x.numpy()
    sigma = sw2 * xn @ xn.T / 5 + sb2
    theta = sigma.copy()
    for _ in range(depth):
        new_sigma, dot = np.empty_like(sigma), np.empty_like(sigma)
        for i in range(3):
            for j in range(3):
                if i == j:  # u = v: a one-dimensional Gaussian integral
                    new_sigma[i, i] = sw2 * _gauss_expect_1d(activation, sigma[i, i], False) + sb2
                    dot[i, i] = sw2 * _gauss_expect_1d(activation, sigma[i, i], True)
                else:
                    new_sigma[i, j] = sw2 * expect(sigma[i, i], sigma[i, j], sigma[j, j], False) + sb2
                    dot[i, j] = sw2 * expect(sigma[i, i], sigma[i, j], sigma[j, j], True)
        theta = new_sigma + theta * dot
        sigma = new_sigma
    nngp = analytic_nngp(x, depth=depth, activation=activation, weight_var=sw2, bias_var=sb2).numpy()
    ntk = analytic_ntk(x, depth=depth, activation=activation, weight_var=sw2, bias_var=sb2).numpy()
    np.testing.assert_allclose(nngp, sigma, rtol=1e-9)
    np.testing.assert_allclose(ntk, theta, rtol=1e-9)


def test_analytic_cross_kernel_is_a_block_of_the_joint_kernel():
    x = _inputs(6, 3, seed=2)
    joint = analytic_ntk(x, depth=2, activation="relu", weight_var=2.0, bias_var=0.1)
    cross = analytic_ntk(x[:2], x[2:], depth=2, activation="relu", weight_var=2.0, bias_var=0.1)
    torch.testing.assert_close(cross, joint[:2, 2:], rtol=1e-14, atol=1e-14)


def test_analytic_bad_input():
    x = _inputs()
    with pytest.raises(ValueError, match="activation"):
        analytic_ntk(x, depth=1, activation="tanh")
    with pytest.raises(ValueError, match="depth"):
        analytic_ntk(x, depth=-1)
    with pytest.raises(ValueError, match="weight_var"):
        analytic_nngp(x, depth=1, weight_var=0.0)
    with pytest.raises(ValueError, match="same number of features"):
        analytic_ntk(x, torch.zeros(2, 4), depth=1)
