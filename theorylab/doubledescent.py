"""Double-descent sweeps: test error against model size, sample size or training time.

:func:`double_descent` runs an experiment ``fn(config) -> dict`` over the values of one axis and over
seeds (through :func:`theorylab.sweep.sweep`, so sweeps can run on processes or Slurm and resume),
and returns a :class:`DoubleDescentResult` with the mean and spread per point, the location and
height of the peak, and a theory curve when one is given.  The axis is the configuration key:

* ``"model_size"``: parameters / features / width (model-wise double descent, Belkin et al. 2019);
* ``"sample_size"``: number of training samples (sample-wise, Nakkiran et al. 2019);
* ``"train_time"``: training steps (epoch-wise): the experiment receives *all* values in
  ``config["train_time"]`` and returns the metric as a list, one entry per value (one run, measured
  along the way).

Module-level experiments (usable with ``executor="processes"``):

* :func:`linear_regression_run`: isotropic linear regression, min-norm least squares or ridge
  (Hastie et al. 2019); the metric is the exact excess risk ``|beta_hat - beta|^2``.
* :func:`linear_gd_run`: the same regression trained by gradient descent from an initialisation of
  a given size, measured over training time (Advani & Saxe 2017).
* :func:`random_features_run`: ReLU random-features regression trained by gradient descent (or
  solved exactly) -- the role of optimization in model-wise double descent (Liu & Flanigan 2023).
* :func:`mlp_digits_run`: two-layer MLPs on the digits data with label noise (Nakkiran et al. 2019);
  :func:`random_features_digits_run`: the same with the first layer random and fixed, readout fitted.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from theorylab.plotting import MEASURED, PREDICTED, axes_or_new
from theorylab.provenance import Stopwatch, make_meta
from theorylab.results import Result, result_class

Axis = Literal["model_size", "sample_size", "train_time"]
AXES: tuple[str, ...] = ("model_size", "sample_size", "train_time")


@result_class
class DoubleDescentResult(Result):
    """Mean and spread of ``metric`` over seeds at each value of ``axis``.

    ``values`` ascending; ``per_seed[i, j]`` is seed ``seeds[i]`` at ``values[j]``; ``std`` is the sample
    standard deviation over seeds (0 with one seed).  The peak is where the error has risen most above
    the best error at smaller values: ``rise = max_j (mean_j - b_j) / |b_j|`` with ``b_j = min_{i <= j} mean_i`` (0 when the error
    never goes up, and the peak is then the first value), ``peak_at`` / ``peak_height`` its location and
    mean.  ``theory_values`` / ``theory`` is the theory curve on a fine grid (empty if none).
    """

    axis: str
    values: np.ndarray
    metric: str
    mean: np.ndarray
    std: np.ndarray
    per_seed: np.ndarray
    seeds: list[int]
    peak_at: float
    peak_height: float
    rise: float
    theory_values: np.ndarray
    theory: np.ndarray
    base: dict[str, Any]
    extras: dict[str, np.ndarray]

    def plot(self, ax: Any = None, *, logx: bool = True, label: str | None = None) -> Any:
        """Mean +- one standard deviation over seeds; the theory curve over it; the peak marked."""
        ax = axes_or_new(ax)
        ax.errorbar(self.values, self.mean, yerr=self.std, fmt="o-", ms=3, capsize=2, color=MEASURED,
                    label=label or f"measured ({len(self.seeds)} seed{'s' if len(self.seeds) > 1 else ''})")
        if self.theory.size:
            finite = np.isfinite(self.theory)
            ax.plot(self.theory_values[finite], self.theory[finite], color=PREDICTED, label="theory")
        ax.plot([self.peak_at], [self.peak_height], "v", color=MEASURED, ms=7, label=f"peak at {self.peak_at:.3g}")
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(self.axis.replace("_", " "))
        ax.set_ylabel(self.metric.replace("_", " "))
        ax.legend()
        return ax


def double_descent(fn: Callable[[dict[str, Any]], dict[str, Any]], *, axis: Axis, values: Sequence[float],
                   base: dict[str, Any] | None = None, seeds: Sequence[int] = (0,), metric: str = "test_error",
                   theory: Callable[[np.ndarray], np.ndarray] | None = None, extras: Sequence[str] = (),
                   out_dir: str | None = None, executor: Any = "serial", progress: bool = False
                   ) -> DoubleDescentResult:
    """Run ``fn({**base, axis: value, "seed": seed})`` for every value and seed and aggregate ``metric``.

    ``theory(values) -> predictions`` is evaluated on a fine grid spanning ``values`` (geometric if all
    are positive); ``extras`` names further scalar outputs of ``fn`` to average (e.g. a condition
    number), stored in ``extras`` as ``(num_seeds, num_values)`` arrays.  ``out_dir`` / ``executor``
    go to :func:`theorylab.sweep.sweep` (store and resume; ``"serial"``, ``"processes"`` or an Executor).
    """
    from theorylab.sweep import sweep

    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}, got {axis!r}")
    xs = np.sort(np.asarray(list(values), dtype=np.float64))
    if xs.size == 0:
        raise ValueError("values is empty: a sweep needs at least one point")
    if not np.all(np.isfinite(xs)):
        raise ValueError("values must be finite")
    if len(set(xs.tolist())) != xs.size:
        raise ValueError("values must be distinct")
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct integers, got {seeds}")
    base = dict(base or {})
    if axis in base or "seed" in base:
        raise ValueError(f"base must not set the swept key {axis!r} or 'seed'")
    plain = [int(v) if float(v).is_integer() else float(v) for v in xs]
    if axis == "train_time":
        configs = [{**base, axis: plain, "seed": s} for s in seeds]
    else:
        configs = [{**base, axis: v, "seed": s} for s in seeds for v in plain]
    with Stopwatch() as watch:
        records = sweep(fn, configs, out_dir=out_dir, executor=executor, progress=progress).records
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(records)} runs failed; the first with config "
                           f"{failed[0]['config']}:\n{failed[0]['error']}")
    table = {name: _collect(records, name, len(seeds), xs.size, axis) for name in (metric, *extras)}
    per_seed = table[metric]
    mean = per_seed.mean(axis=0)
    std = per_seed.std(axis=0, ddof=1) if len(seeds) > 1 else np.zeros_like(mean)
    best = np.minimum.accumulate(mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        rise = np.where(best != 0, (mean - best) / np.abs(best), np.where(mean > best, np.inf, 0.0))
    peak = int(np.argmax(rise))
    grid, curve = np.empty(0), np.empty(0)
    if theory is not None:
        lo, hi = xs.min(), xs.max()
        grid = np.geomspace(lo, hi, 400) if lo > 0 else np.linspace(lo, hi, 400)
        curve = np.asarray(theory(grid), dtype=np.float64)
        if curve.shape != grid.shape:
            raise ValueError(f"theory must map an array of {grid.size} values to as many predictions, "
                             f"got shape {curve.shape}")
    return DoubleDescentResult(axis=axis, values=xs, metric=metric, mean=mean, std=std, per_seed=per_seed,
                               seeds=seeds, peak_at=float(xs[peak]), peak_height=float(mean[peak]),
                               rise=float(rise[peak]),
                               theory_values=grid, theory=curve, base=base,
                               extras={k: v for k, v in table.items() if k != metric},
                               meta=make_meta(seeds=seeds, wall_time_s=round(watch.seconds, 3),
                                              function=getattr(fn, "__qualname__", repr(fn))))


def _collect(records: list[dict[str, Any]], name: str, num_seeds: int, num_values: int, axis: str) -> np.ndarray:
    """The output ``name`` of every run as a ``(num_seeds, num_values)`` array (runs are seed-major)."""
    expected = num_values if axis == "train_time" else 1
    rows = []
    for r in records:
        if name not in r["result"]:
            raise ValueError(f"the experiment returned no {name!r} (it returned {sorted(r['result'])})")
        row = np.asarray(r["result"][name], dtype=np.float64).ravel()
        if row.size != expected:
            raise ValueError(f"the experiment's {name!r} must hold {expected} value(s) per run "
                             f"({'one per step count' if axis == 'train_time' else 'a scalar'}), got {row.size}")
        rows.append(row)
    return np.concatenate(rows).reshape(num_seeds, num_values)


# ---------------------------------------------------------------------------------------------
# Experiments
# ---------------------------------------------------------------------------------------------
def _regression_data(n: int, p: int, noise: float, signal: float, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x ~ N(0, I_p)``, ``beta`` uniform on the sphere of radius ``sqrt(signal)``, Gaussian label noise."""
    x = rng.standard_normal((n, p))
    beta = rng.standard_normal(p)
    beta *= math.sqrt(signal) / np.linalg.norm(beta)
    y = x @ beta + math.sqrt(noise) * rng.standard_normal(n)
    return x, y, beta


def _check_keys(config: dict[str, Any], keys: str, experiment: str) -> None:
    """Refuse a config key the built-in experiment does not read (a misspelt key would be ignored)."""
    unknown = sorted(set(config) - set(keys.split()))
    if unknown:
        raise ValueError(f"{experiment} does not read the config keys {unknown}; its keys are {sorted(keys.split())}")


def linear_regression_run(config: dict[str, Any]) -> dict[str, float]:
    """Isotropic linear regression: ``model_size`` = p, ``sample_size`` = n, ``noise`` = sigma^2,
    ``signal`` = r^2 (default 1), ``ridge`` = lambda (default 0: the minimum-norm interpolator),
    ``seed``.  Returns ``test_error`` = the exact excess risk ``|beta_hat - beta|^2`` (Hastie et al. 2019)
    and ``train_error`` (training MSE)."""
    _check_keys(config, "model_size sample_size noise signal ridge seed", "linear_regression_run")
    p, n = int(config["model_size"]), int(config["sample_size"])
    noise, signal, ridge = float(config.get("noise", 0.0)), float(config.get("signal", 1.0)), float(config.get("ridge", 0.0))
    if p < 1 or n < 1 or noise < 0 or signal < 0 or ridge < 0:
        raise ValueError(f"need model_size, sample_size >= 1 and noise, signal, ridge >= 0, got {config}")
    x, y, beta = _regression_data(n, p, noise, signal, np.random.default_rng(int(config["seed"])))
    if ridge == 0:
        beta_hat = np.linalg.lstsq(x, y, rcond=None)[0]  # minimum-norm solution when p > n
    else:
        beta_hat = np.linalg.solve(x.T @ x / n + ridge * np.eye(p), x.T @ y / n)
    return {"test_error": float(np.sum((beta_hat - beta) ** 2)), "train_error": float(np.mean((x @ beta_hat - y) ** 2))}


def _svd_nonzero(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD ``F = U S V^T`` restricted to the numerically nonzero singular values."""
    u, s, vt = np.linalg.svd(features, full_matrices=False)
    keep = s > s.max() * max(features.shape) * np.finfo(np.float64).eps
    return u[:, keep], s[keep], vt[keep]


def _gd_iterates(svd: tuple[np.ndarray, np.ndarray, np.ndarray], n: int, targets: np.ndarray, lr: float,
                 steps: Sequence[int], w0: np.ndarray) -> np.ndarray:
    u, s, vt = svd
    target = (u.T @ targets) / s
    start = vt @ w0
    k = np.asarray(steps, dtype=np.float64)[:, None]
    remaining = (1.0 - lr * s ** 2 / n)[None, :] ** k
    coords = target[None, :] + (start - target)[None, :] * remaining
    return w0[None, :] + (coords - start[None, :]) @ vt


def gd_least_squares(features: np.ndarray, targets: np.ndarray, *, lr: float, steps: Sequence[int],
                     init: np.ndarray | None = None) -> np.ndarray:
    """Iterates of gradient descent on ``|F w - y|^2 / (2n)`` at the given step counts, shape ``(len(steps), p)``.

    Computed exactly in the singular basis ``F = U S V^T``: the component along ``v_i`` moves from its
    initial value towards the least-squares value ``u_i . y / s_i`` by the factor ``1 - (1 - lr s_i^2/n)^k``;
    components in the null space of ``F`` keep their initial value.  (Identical to iterating
    ``w <- w - lr F^T (F w - y) / n`` ``k`` times, up to rounding.)
    """
    features = np.asarray(features, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if features.ndim != 2 or targets.shape != (features.shape[0],):
        raise ValueError(f"need features (n, p) and targets (n,), got {features.shape} and {targets.shape}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    if len(steps) == 0 or min(steps) < 0:
        raise ValueError("steps must be a non-empty list of step counts >= 0")
    n, p = features.shape
    w0 = np.zeros(p) if init is None else np.asarray(init, dtype=np.float64)
    return _gd_iterates(_svd_nonzero(features), n, targets, lr, steps, w0)


def linear_gd_run(config: dict[str, Any]) -> dict[str, list[float]]:
    """Isotropic linear regression trained by GD from ``w_0 ~ N(0, init_norm2 / p I)``, measured at the
    step counts ``train_time`` (a list).  Keys: ``model_size`` = p, ``sample_size`` = n, ``noise``,
    ``signal``, ``init_norm2``, ``lr`` (absolute step), ``seed``.  Returns ``test_error`` (exact
    excess risk) and ``train_error`` per step count (Advani & Saxe 2017)."""
    _check_keys(config, "model_size sample_size noise signal init_norm2 lr train_time seed", "linear_gd_run")
    p, n = int(config["model_size"]), int(config["sample_size"])
    steps = [int(k) for k in config["train_time"]]
    rng = np.random.default_rng(int(config["seed"]))
    x, y, beta = _regression_data(n, p, float(config.get("noise", 0.0)), float(config.get("signal", 1.0)), rng)
    init = rng.standard_normal(p) * math.sqrt(float(config.get("init_norm2", 0.0)) / p)
    ws = gd_least_squares(x, y, lr=float(config["lr"]), steps=steps, init=init)
    return {"test_error": np.sum((ws - beta) ** 2, axis=1).tolist(),
            "train_error": np.mean((ws @ x.T - y) ** 2, axis=1).tolist()}


def random_features_run(config: dict[str, Any]) -> dict[str, float]:
    """ReLU random-features regression (:class:`theorylab.models.RandomFeatures`) on a linear teacher.

    Keys: ``model_size`` = number of features N, ``sample_size`` = n, ``dim`` = d, ``noise`` (label
    noise variance), ``steps`` (gradient-descent steps on the readout from zero; ``None`` = the exact
    minimum-norm least-squares solution, GD's limit), ``lr_scale`` (step size in units of ``1/lam_max``
    of the feature Gram ``F^T F / n``, default 1), ``feature_spread`` (each feature column is multiplied
    by ``10^u``, ``u`` uniform in ``[-spread/2, spread/2]``: a worse-conditioned parametrisation of the
    same model class, with the same unique fit when ``N <= n``; default 0), ``num_test``, ``seed``.
    Returns ``test_error`` (MSE against the clean teacher), ``train_error``, and ``condition_number``
    of the nonzero spectrum of ``F^T F / n`` (``lam_max / lam_min``: it diverges at ``N = n``).
    """
    from theorylab.models import RandomFeatures

    _check_keys(config, "model_size sample_size dim noise steps lr_scale feature_spread num_test seed", "random_features_run")
    num_features, n, d = int(config["model_size"]), int(config["sample_size"]), int(config["dim"])
    num_test, noise = int(config.get("num_test", 1000)), float(config.get("noise", 0.0))
    steps, spread = config.get("steps"), float(config.get("feature_spread", 0.0))
    rng = np.random.default_rng(int(config["seed"]))
    x = rng.standard_normal((n + num_test, d))
    beta = rng.standard_normal(d) / math.sqrt(d)
    clean = x @ beta
    y = clean[:n] + math.sqrt(noise) * rng.standard_normal(n)
    model = RandomFeatures(d, num_features, 1, seed=int(config["seed"])).double()
    with torch.no_grad():
        feats = model.features(torch.as_tensor(x)).numpy()
    feats = feats * 10.0 ** (spread * rng.uniform(-0.5, 0.5, num_features))
    train_f, test_f = feats[:n], feats[n:]
    svd = _svd_nonzero(train_f)
    eig = svd[1] ** 2 / n
    if steps is None:  # the minimum-norm interpolator (or least-squares fit), the limit of GD from zero
        w = svd[2].T @ ((svd[0].T @ y) / svd[1])
    else:
        lr = float(config.get("lr_scale", 1.0)) / eig.max()
        w = _gd_iterates(svd, n, y, lr, [int(steps)], np.zeros(num_features))[0]
    return {"test_error": float(np.mean((test_f @ w - clean[n:]) ** 2)),
            "train_error": float(np.mean((train_f @ w - y) ** 2)),
            "condition_number": float(eig.max() / eig.min())}


def mlp_digits_run(config: dict[str, Any]) -> dict[str, float]:
    """Two-layer ReLU MLPs (:class:`theorylab.models.MLP`, hidden width ``model_size``) on the digits data
    with label noise, ``members`` independent networks trained side by side.

    Keys: ``model_size`` (width), ``sample_size`` (training samples drawn with ``seed``, default all
    1,258), ``label_noise`` (fraction of training labels replaced by a fixed random *incorrect* label,
    Nakkiran et al. 2019), ``steps``, ``lr``, ``optimizer`` (``"adam"`` (default) or ``"gd"``, full
    batch), ``loss`` (``"cross_entropy"`` (default) or ``"mse"`` on one-hot targets), ``members``
    (default 1), ``device`` (default ``"cpu"``), ``seed``.  Member ``i`` has its own initialisation and label noise, both seeded by
    ``seed + 10007 i``; the members' weights are stacked and trained as one batch of independent
    problems (the summed loss has each member's own gradient, and Adam and GD act elementwise), which
    is the same as training each network alone.  Returns the members' mean ``test_error`` (0-1 error on
    the clean test set), its standard deviation ``test_error_sd`` over members, the mean
    ``train_error`` (on the noisy labels), ``num_params`` of one network, and each member's errors
    (``member_test_errors``, ``member_train_errors``: member ``i`` has the same initialisation seed and
    label noise at every width, so differences across widths can be paired).
    """
    from theorylab.data import load_digits, with_label_noise
    from theorylab.models import MLP

    _check_keys(config, "model_size sample_size label_noise steps lr optimizer loss members device seed", "mlp_digits_run")
    width, seed, members = int(config["model_size"]), int(config["seed"]), int(config.get("members", 1))
    steps, lr = int(config["steps"]), float(config["lr"])
    loss_name, optimizer = config.get("loss", "cross_entropy"), config.get("optimizer", "adam")
    if loss_name not in ("cross_entropy", "mse"):
        raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {loss_name!r}")
    if optimizer not in ("adam", "gd"):
        raise ValueError(f"optimizer must be 'adam' or 'gd', got {optimizer!r}")
    if members < 1 or steps < 0 or not lr > 0:
        raise ValueError(f"need members >= 1, steps >= 0 and lr > 0, got {members}, {steps}, {lr}")
    split = load_digits(seed=0)
    if config.get("sample_size") is not None:
        split = split.subsample(int(config["sample_size"]), seed=seed)
    device = torch.device(config.get("device", "cpu"))
    split = split.to(device)
    member_seeds = [seed + 10007 * i for i in range(members)]
    labels = torch.stack([with_label_noise(split.y_train.cpu(), float(config.get("label_noise", 0.0)), 10, seed=s)
                          for s in member_seeds]).to(device)
    nets = [MLP(64, [width], 10, seed=s) for s in member_seeds]
    params = [nn.Parameter(torch.stack([getattr(layer, name).detach() for layer in layers]).to(device))
              for layers in ([n.hidden_layers[0] for n in nets], [n.readout for n in nets])
              for name in ("weight", "bias")]
    if any(n.hidden_layers[0].multiplier != 1.0 or n.readout.multiplier != 1.0 for n in nets):
        raise ValueError("the stacked MLPs assume the standard parametrization (multipliers 1)")
    w1, b1, w2, b2 = params

    def forward(x: torch.Tensor) -> torch.Tensor:  # (members, samples, classes)
        h = torch.relu(torch.einsum("nd,mwd->mnw", x, w1) + b1[:, None, :])
        return torch.einsum("mnw,mcw->mnc", h, w2) + b2[:, None, :]

    def loss_of(out: torch.Tensor) -> torch.Tensor:  # the sum over members of each member's mean loss
        if loss_name == "mse":
            return ((out - nn.functional.one_hot(labels, 10).to(out.dtype)) ** 2).sum(-1).mean(-1).sum()
        ce = nn.functional.cross_entropy(out.reshape(-1, 10), labels.reshape(-1), reduction="none")
        return ce.view(members, -1).mean(-1).sum()

    opt = torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss_of(forward(split.x_train)).backward()
        opt.step()
    with torch.no_grad():
        test = (forward(split.x_test).argmax(-1) != split.y_test[None, :]).double().mean(-1)
        train_err = (forward(split.x_train).argmax(-1) != labels).double().mean(-1)
    return {"test_error": float(test.mean()), "test_error_sd": float(test.std()) if members > 1 else 0.0,
            "train_error": float(train_err.mean()), "num_params": float(sum(p[0].numel() for p in params)),
            "member_test_errors": test.cpu().tolist(), "member_train_errors": train_err.cpu().tolist()}


def random_features_digits_run(config: dict[str, Any]) -> dict[str, float]:
    """A two-layer ReLU network on the digits data whose first layer is random and fixed
    (:class:`theorylab.models.RandomFeatures`, ``model_size`` features) and whose readout is the
    minimum-norm least-squares fit to one-hot targets (the limit of gradient descent on the MSE from
    zero).  Keys: ``model_size``, ``sample_size`` (default all 1,258), ``label_noise`` (Nakkiran et al.
    2019: a fixed random *incorrect* label), ``seed``.  Returns ``test_error`` (0-1, clean test set),
    ``train_error`` (0-1 on the noisy labels) and ``condition_number`` of the feature Gram.
    """
    from theorylab.data import load_digits, with_label_noise
    from theorylab.models import RandomFeatures

    _check_keys(config, "model_size sample_size label_noise seed", "random_features_digits_run")
    width, seed = int(config["model_size"]), int(config["seed"])
    split = load_digits(seed=0, dtype=torch.float64)
    if config.get("sample_size") is not None:
        split = split.subsample(int(config["sample_size"]), seed=seed)
    y_train = with_label_noise(split.y_train, float(config.get("label_noise", 0.0)), 10, seed=seed)
    model = RandomFeatures(64, width, 10, seed=seed).double()
    with torch.no_grad():
        train_f, test_f = model.features(split.x_train).numpy(), model.features(split.x_test).numpy()
    u, s, vt = _svd_nonzero(train_f)
    readout = vt.T @ ((u.T @ np.eye(10)[y_train.numpy()]) / s[:, None])
    n = len(y_train)
    return {"test_error": float(np.mean((test_f @ readout).argmax(1) != split.y_test.numpy())),
            "train_error": float(np.mean((train_f @ readout).argmax(1) != y_train.numpy())),
            "condition_number": float(s.max() ** 2 / s.min() ** 2) if n else float("nan")}
