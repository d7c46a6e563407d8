"""Curvature benchmark: theorylab against PyHessian 0.1, curvlinops and hessian-eigenthings, side by side.

Two problems, float32, mean cross-entropy on one batch of N(0, 1) inputs with random labels:

* ``mlp``: MLP 784-256-256-10 (ReLU), batch 512;
* ``cnn``: a ResNet-style CNN (3 residual blocks, 16-32-64 channels, BatchNorm in eval mode) on a
  batch of 64 images 3 x 32 x 32.

For each it measures, every timing the fastest of ``--repeats`` runs interleaved across the
libraries so that all see the same machine load:

* one product: theorylab's Hessian-vector product on its cached graph against each peer's, and
  blocks of 8 vectors looped and batched (one vmapped backward); on the MLP also
  ``torch.compile`` of a forward-over-reverse product;
* top-5 eigenvalues against a float64 ground truth (tol 1e-10): theorylab (tol 1e-4; with its
  multiplicity check run, the default, and without it, as the peers run), PyHessian
  at its defaults, curvlinops (``HessianLinearOperator`` + ``scipy.sparse.linalg.eigsh``, tol 1e-4)
  and hessian-eigenthings (Lanczos with the fewest steps, of 20, 30, ..., that reach 1e-4, and at
  its defaults);
* Hutch++ with 99 products: theorylab, curvlinops ``hutchpp_trace`` (and its ``xtrace``, 98) and
  hessian-eigenthings ``hutch_plus_plus``, the same estimator at the same budget (so the same
  accuracy in distribution); Hutchinson per probe against PyHessian's ``trace``;
* the cost of reorthogonalization over 100 Lanczos steps, full and partial: the time spent in
  projections against the basis over the time spent in products, both timed inside the run; SLQ
  (100 steps x 5 probes) in each mode;
* on a small MLP (digits-sized, P = 2,410): the dense GGN against curvlinops'.

Run: ``.venv/bin/python benchmarks/bench_curvature.py [--device cpu|cuda] [--threads 1] [--json PATH]``.
The peers come with ``pip install -e ".[bench]"`` (see README: curvlinops' dependency on torchvision).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse.linalg
import torch
from torch import nn

from theorylab._io import atomic_write_json
from theorylab.curvature import LinearOperator, ggn, hessian, lanczos, spectral_density, top_eigenvalues, trace
from theorylab.curvature.basis import KrylovBasis
from theorylab.devices import resolve_device

K, TOL = 5, 1e-4


# -- problems ------------------------------------------------------------------------------------
class _ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                  nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


def problem(name: str, device: torch.device) -> tuple[nn.Module, nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    if name == "mlp":
        model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
        x = torch.randn(512, 784, generator=g)
    elif name == "cnn":
        model = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                              _ResidualBlock(16, 16), _ResidualBlock(16, 32, 2), _ResidualBlock(32, 64, 2),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
        x = torch.randn(64, 3, 32, 32, generator=g)
    elif name == "small":
        model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
        x = torch.randn(256, 64, generator=g)
    else:
        raise ValueError(name)
    y = torch.randint(0, 10, (x.shape[0],), generator=g)
    return model.to(device).eval(), nn.CrossEntropyLoss(), (x.to(device), y.to(device))


# -- timing --------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def _fastest(fns: dict[str, Callable[[], Any]], device: torch.device, repeats: int) -> dict[str, tuple[float, Any]]:
    """Fastest of ``repeats`` timings of each function (with its output), interleaved."""
    best: dict[str, tuple[float, Any]] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            seconds, out = _timed(fn, device)
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, out)
    return best


# -- peers ---------------------------------------------------------------------------------------
class _Counted:
    """Counts calls of ``module.attribute`` (a function) while active."""

    def __init__(self, module: Any, attribute: str, per_call: Callable[..., int] = lambda *a, **k: 1):
        self.module, self.attribute, self.per_call, self.count = module, attribute, per_call, 0
        self.original = getattr(module, attribute)

    def __enter__(self) -> "_Counted":
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += self.per_call(*args, **kwargs)
            return self.original(*args, **kwargs)

        setattr(self.module, self.attribute, counted)
        return self

    def __exit__(self, *exc: object) -> None:
        setattr(self.module, self.attribute, self.original)


def _pyhessian(model: nn.Module, loss: nn.Module, data: tuple, device: torch.device) -> Any:
    import pyhessian

    return pyhessian.hessian(copy.deepcopy(model), loss, data=data, cuda=device.type == "cuda")


def _pyhessian_call(model: nn.Module, loss: nn.Module, data: tuple, device: torch.device, method: str,
                    **kwargs: Any) -> tuple[Any, int]:
    """A PyHessian call, construction included, with its number of Hessian-vector products."""
    import pyhessian  # noqa: F401  (the package exports a class named like its module)

    torch.manual_seed(0)
    with _Counted(sys.modules["pyhessian.hessian"], "hessian_vector_product") as counter:
        out = getattr(_pyhessian(model, loss, data, device), method)(**kwargs)
    return out, counter.count


def _curvlinops(model: nn.Module, loss: nn.Module, data: tuple) -> Any:
    from curvlinops import HessianLinearOperator

    return HessianLinearOperator(model, loss, [p for p in model.parameters()], [data], check_deterministic=False)


def _eigenthings(model: nn.Module, loss: nn.Module, data: tuple) -> Any:
    import hessian_eigenthings as he

    return he.HessianOperator(model, [data], he.supervised_loss(loss))


def _counting_scipy(op: scipy.sparse.linalg.LinearOperator) -> tuple[scipy.sparse.linalg.LinearOperator, list[int]]:
    count = [0]

    def matmat(x: np.ndarray) -> np.ndarray:
        count[0] += 1 if x.ndim == 1 else x.shape[1]
        return op @ x

    return scipy.sparse.linalg.LinearOperator(op.shape, matvec=matmat, matmat=matmat, dtype=op.dtype), count


def _relative_error(values: np.ndarray, truth: np.ndarray) -> float:
    values = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    return float(np.max(np.abs(values - truth[:len(values)]) / np.abs(truth[:len(values)])))


# -- measurements --------------------------------------------------------------------------------
def products(name: str, device: torch.device, repeats: int) -> dict[str, Any]:
    """Seconds per product of each library, and per vector of a block of 8 looped and batched."""
    model, loss, data = problem(name, device)
    params = list(model.parameters())
    op = hessian(model, loss, data)
    size = op.shape[0]
    g = torch.Generator().manual_seed(2)
    v, block = torch.randn(size, generator=g).to(device), torch.randn(8, size, generator=g).to(device)
    ph = _pyhessian(model, loss, data, device)
    from pyhessian.utils import hessian_vector_product

    ph_v = [vi.reshape(p.shape) for vi, p in zip(v.split([p.numel() for p in params]), params)]
    cl, et = _curvlinops(model, loss, data), _eigenthings(model, loss, data)
    looped, batched = hessian(model, loss, data), hessian(model, loss, data)
    looped.block_products.mode, batched.block_products.mode = "loop", "batched"

    def gradient() -> Any:
        return torch.autograd.grad(loss(model(data[0]), data[1]), params)

    fns = {"gradient": gradient, "theorylab": lambda: op @ v,
           "theorylab_with_graph_build": lambda: hessian(model, loss, data) @ v,
           "pyhessian": lambda: hessian_vector_product(ph.gradsH, ph.params, ph_v),
           "curvlinops": lambda: cl @ v, "hessian_eigenthings": lambda: et.matvec(v),
           "block8_loop": lambda: looped @ block.T, "block8_batched": lambda: batched @ block.T}
    for fn in fns.values():
        fn()  # warm-up
    best = {k: t for k, (t, _) in _fastest(fns, device, repeats).items()}
    best["block8_loop"] /= 8
    best["block8_batched"] /= 8
    row: dict[str, Any] = {"seconds": best, "ratio_to_gradient": {k: t / best["gradient"] for k, t in best.items()}}
    if name == "mlp":
        row["compile"] = _compiled_product(model, loss, data, device, repeats, best["theorylab"])
    return row


def _compiled_product(model: nn.Module, loss: nn.Module, data: tuple, device: torch.device, repeats: int,
                      cached_s: float) -> dict[str, Any]:
    """``torch.compile`` of ``jvp(grad L)`` against the eager one and the cached double backward."""
    x, y = data
    primals = {n: p.detach() for n, p in model.named_parameters()}
    tangents = {n: torch.randn_like(p) for n, p in primals.items()}

    def product(p: dict, t: dict) -> Any:
        grad = torch.func.grad(lambda q: loss(torch.func.functional_call(model, q, (x,)), y))
        return torch.func.jvp(grad, (p,), (t,))[1]

    compiled = torch.compile(product)
    try:
        build_s, _ = _timed(lambda: compiled(primals, tangents), device)
    except Exception as error:  # noqa: BLE001  (a compiler failure is a result here)
        return {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"}
    best = _fastest({"eager": lambda: product(primals, tangents), "compiled": lambda: compiled(primals, tangents)},
                    device, repeats)
    return {"compile_s": build_s, "eager_forward_over_reverse_s": best["eager"][0],
            "compiled_forward_over_reverse_s": best["compiled"][0], "cached_double_backward_s": cached_s}


def top5(name: str, device: torch.device, repeats: int) -> dict[str, Any]:
    model, loss, data = problem(name, device)
    truth = top_eigenvalues(hessian(model, loss, data, dtype=torch.float64), K, tol=1e-10, seed=1).values
    import hessian_eigenthings as he

    et = _eigenthings(model, loss, data)
    steps, et_error = None, None
    for steps in (20, 30, 40, 50, 60, 80, 100, 150):  # the fewest Lanczos steps that reach TOL
        et_error = _relative_error(he.lanczos(et, k=K, max_iter=steps, which="LA", seed=0).eigenvalues.cpu().numpy(),
                                   truth)
        if et_error <= TOL:
            break
    et_default = he.lanczos(_eigenthings(model, loss, data), k=K, which="LA", seed=0)

    def curvlinops_eigsh() -> tuple[np.ndarray, int]:
        op, count = _counting_scipy(_curvlinops(model, loss, data).to_scipy())
        values = scipy.sparse.linalg.eigsh(op, k=K, which="LA", tol=TOL, return_eigenvectors=False,
                                           v0=np.random.default_rng(0).standard_normal(op.shape[0]).astype(op.dtype))
        return values, count[0]

    fns = {"theorylab": lambda: top_eigenvalues(hessian(model, loss, data), K, tol=TOL, seed=0),
           "theorylab_unchecked": lambda: top_eigenvalues(hessian(model, loss, data), K, tol=TOL, seed=0, check=False),
           "pyhessian": lambda: _pyhessian_call(model, loss, data, device, "eigenvalues", top_n=K),
           "curvlinops": curvlinops_eigsh,
           "hessian_eigenthings": lambda: he.lanczos(_eigenthings(model, loss, data), k=K, max_iter=steps, which="LA",
                                                     seed=0)}
    best = _fastest(fns, device, repeats)
    ours, ((ph_values, _), ph_hvps) = best["theorylab"][1], best["pyhessian"][1]  # PyHessian: (values, vectors)
    cl_values, cl_mv = best["curvlinops"][1]
    rows = {
        "ground_truth": truth.tolist(),
        "theorylab": {"s": best["theorylab"][0], "products": ours.num_matvecs, "error": _relative_error(ours.values, truth),
                      "runs": ours.num_runs},
        "theorylab_unchecked": {"s": best["theorylab_unchecked"][0], "products": best["theorylab_unchecked"][1].num_matvecs,
                                "error": _relative_error(best["theorylab_unchecked"][1].values, truth)},
        "pyhessian_default": {"s": best["pyhessian"][0], "products": ph_hvps, "error": _relative_error(ph_values, truth)},
        "curvlinops_eigsh": {"s": best["curvlinops"][0], "products": cl_mv, "error": _relative_error(cl_values, truth)},
        "hessian_eigenthings": {"s": best["hessian_eigenthings"][0], "products": steps, "error": et_error,
                                "default_steps": 2 * K,
                                "default_error": _relative_error(et_default.eigenvalues.cpu().numpy(), truth),
                                "default_reports_converged": bool(et_default.converged.all())},
    }
    for peer in ("pyhessian_default", "curvlinops_eigsh", "hessian_eigenthings"):
        rows[peer]["theorylab_time_ratio"] = rows["theorylab"]["s"] / rows[peer]["s"]
        rows[peer]["theorylab_unchecked_time_ratio"] = rows["theorylab_unchecked"]["s"] / rows[peer]["s"]
    return rows


def traces(name: str, device: torch.device, repeats: int) -> dict[str, Any]:
    model, loss, data = problem(name, device)
    import hessian_eigenthings as he
    from curvlinops import hutchpp_trace, xtrace

    budget = 99
    fns = {"theorylab": lambda: trace(hessian(model, loss, data), num_probes=budget, method="hutch++", seed=0),
           "curvlinops_hutchpp": lambda: float(hutchpp_trace(_curvlinops(model, loss, data), budget)),
           "curvlinops_xtrace": lambda: float(xtrace(_curvlinops(model, loss, data), budget - 1)),  # needs even
           "hessian_eigenthings": lambda: he.hutch_plus_plus(_eigenthings(model, loss, data), num_matvecs=budget,
                                                             seed=0)}
    best = _fastest(fns, device, repeats)
    ours = best["theorylab"][1]
    rows: dict[str, Any] = {
        "products": budget,
        "theorylab": {"s": best["theorylab"][0], "estimate": ours.estimate, "stderr": ours.stderr},
        "curvlinops_hutchpp": {"s": best["curvlinops_hutchpp"][0], "estimate": best["curvlinops_hutchpp"][1]},
        "curvlinops_xtrace": {"s": best["curvlinops_xtrace"][0], "estimate": best["curvlinops_xtrace"][1],
                              "products": budget - 1},
        "hessian_eigenthings": {"s": best["hessian_eigenthings"][0], "estimate": best["hessian_eigenthings"][1].estimate,
                                "stderr": best["hessian_eigenthings"][1].stderr},
    }
    for peer in ("curvlinops_hutchpp", "curvlinops_xtrace", "hessian_eigenthings"):
        rows[peer]["theorylab_time_ratio"] = rows["theorylab"]["s"] / rows[peer]["s"]
    if name == "mlp":  # Hutchinson per probe against PyHessian (tol 0: all 100 probes)
        hutchinson = _fastest({"theorylab": lambda: trace(hessian(model, loss, data), num_probes=100, seed=0),
                               "pyhessian": lambda: _pyhessian_call(model, loss, data, device, "trace", maxIter=100,
                                                                    tol=0.0)}, device, repeats)
        ph_samples, ph_hvps = hutchinson["pyhessian"][1]
        rows["hutchinson_per_probe"] = {
            "theorylab_s": hutchinson["theorylab"][0] / 100, "pyhessian_s": hutchinson["pyhessian"][0] / ph_hvps,
            "theorylab": hutchinson["theorylab"][1].estimate, "pyhessian": float(np.mean(ph_samples)),
            "ratio": (hutchinson["theorylab"][0] / 100) / (hutchinson["pyhessian"][0] / ph_hvps)}
    return rows


class _TimedOperator(LinearOperator):
    """An operator that adds up the seconds spent in its inner operator's products."""

    def __init__(self, inner: LinearOperator):
        super().__init__(inner.shape[0], inner.dtype, inner.device)
        self.inner, self.seconds = inner, 0.0

    def _matmat(self, vectors: torch.Tensor) -> torch.Tensor:
        seconds, out = _timed(lambda: self.inner @ vectors, self.device)
        self.seconds += seconds
        return out


def _lanczos_split(op: LinearOperator, mode: str, device: torch.device) -> dict[str, float]:
    """Seconds of 100 Lanczos steps: in total, in products, and in projections against the basis."""
    timed, spent = _TimedOperator(op), [0.0]
    original = KrylovBasis.project

    def project(self: KrylovBasis, *args: Any) -> torch.Tensor:
        seconds, out = _timed(lambda: original(self, *args), device)
        spent[0] += seconds
        return out

    KrylovBasis.project = project
    try:
        total, decomposition = _timed(lambda: lanczos(timed, num_steps=100, seed=0, reorthogonalize=mode), device)
    finally:
        KrylovBasis.project = original
    return {"total_s": total, "products_s": timed.seconds, "projections_s": spent[0],
            "reorthogonalized_steps": decomposition.num_reorthogonalizations}


def lanczos_costs(name: str, device: torch.device, repeats: int) -> dict[str, Any]:
    """Reorthogonalization over 100 steps (full, partial) as a share of the time of the products in
    the same run (timed inside the run, so that load changes between runs do not enter); SLQ per mode."""
    model, loss, data = problem(name, device)
    op = hessian(model, loss, data)
    modes = ("full", "partial", "none")
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for _ in range(repeats):  # interleaved
        for mode in modes:
            runs[mode].append(_lanczos_split(op, mode, device))

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    rows: dict[str, Any] = {}
    for mode in modes:
        rows[mode] = {
            "reorthogonalization_share_of_product_time": median([r["projections_s"] / r["products_s"]
                                                                 for r in runs[mode]]),
            # the same from whole runs: (this run - the run without reorthogonalization) / its products
            "run_difference_share": median([(r["total_s"] - bare["total_s"]) / bare["products_s"]
                                            for r, bare in zip(runs[mode], runs["none"])]),
            "rest_of_step_share": median([(r["total_s"] - r["products_s"] - r["projections_s"]) / r["products_s"]
                                          for r in runs[mode]]),
            "runs": runs[mode]}
    slq = _fastest({mode: (lambda mode=mode: spectral_density(op, num_steps=100, num_probes=5, reorthogonalize=mode))
                    for mode in ("full", "partial", "none")}, device, 1)
    rows["slq_100x5"] = {m: {"s": s, "ghosts": d.ghosts.tolist(), "trace": d.trace_estimate,
                             "ritz_max": d.ritz_max} for m, (s, d) in slq.items()}
    try:
        _, (_, hvps) = _timed(lambda: _pyhessian_call(model, loss, data, device, "density", iter=100, n_v=5), device)
        rows["slq_100x5"]["pyhessian"] = f"{hvps} products"
    except RuntimeError as error:
        rows["slq_100x5"]["pyhessian"] = f"crashed: {str(error).splitlines()[0][:80]}"
    return rows


def dense_ggn(device: torch.device, repeats: int) -> dict[str, Any]:
    from curvlinops import GGNLinearOperator

    model, loss, data = problem("small", device)
    params = list(model.parameters())
    size = sum(p.numel() for p in params)
    eye = torch.eye(size, device=device)
    cl = GGNLinearOperator(model, loss, params, [data], check_deterministic=False)
    best = _fastest({"theorylab": lambda: ggn(model, loss, data).to_dense(), "curvlinops": lambda: cl @ eye},
                    device, repeats)
    gap = float((best["theorylab"][1] - best["curvlinops"][1]).abs().max() / best["curvlinops"][1].abs().max())
    return {"parameters": size, "theorylab_s": best["theorylab"][0], "curvlinops_s": best["curvlinops"][0],
            "ratio": best["theorylab"][0] / best["curvlinops"][0], "max_relative_difference": gap}


def run(device: torch.device, repeats: int) -> dict[str, Any]:
    rows: dict[str, Any] = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__}
    for name in ("mlp", "cnn"):
        model, _, _ = problem(name, device)
        rows[name] = {"parameters": sum(p.numel() for p in model.parameters()),
                      "products": products(name, device, repeats), "top5": top5(name, device, repeats),
                      "trace": traces(name, device, repeats)}
        if name == "mlp":
            rows[name]["lanczos"] = lanczos_costs(name, device, repeats)
    rows["dense_ggn"] = dense_ggn(device, repeats)
    return rows


def _table(rows: dict[str, Any]) -> str:
    out = [f"curvature benchmark on {rows['device']} ({rows['threads']} threads, torch {rows['torch']}), float32; "
           "ratio = theorylab time / peer time"]
    for name in ("mlp", "cnn"):
        r = rows[name]
        title = {"mlp": "MLP 784-256-256-10, batch 512", "cnn": "ResNet-style CNN, batch 64 x 3 x 32 x 32"}[name]
        out.append(f"\n{title}, P = {r['parameters']:,}")
        p = r["products"]["ratio_to_gradient"]
        out.append("  one product / one gradient: " + ", ".join(
            f"{k} {p[k]:.2f}" for k in ("theorylab", "theorylab_with_graph_build", "pyhessian", "curvlinops",
                                        "hessian_eigenthings", "block8_loop", "block8_batched")))
        if "compile" in r["products"]:
            c = r["products"]["compile"]
            out.append("  torch.compile: " + (c["error"] if "error" in c else
                       f"compiled jvp(grad) {c['compiled_forward_over_reverse_s'] * 1e3:.1f} ms, eager "
                       f"{c['eager_forward_over_reverse_s'] * 1e3:.1f} ms, cached double backward "
                       f"{c['cached_double_backward_s'] * 1e3:.1f} ms (compile {c['compile_s']:.0f} s)"))
        t = r["top5"]
        out.append(f"  top-5 (tol {TOL:g}):{'':<22}{'time s':>9}{'products':>10}{'max rel err':>13}{'ratio':>8}"
                   f"{'unchecked':>11}")
        for peer in ("theorylab", "theorylab_unchecked", "pyhessian_default", "curvlinops_eigsh", "hessian_eigenthings"):
            e = t[peer]
            ratio = f"{e['theorylab_time_ratio']:.2f}" if "theorylab_time_ratio" in e else ""
            unchecked = f"{e['theorylab_unchecked_time_ratio']:.2f}" if "theorylab_time_ratio" in e else ""
            out.append(f"    {peer:<36}{e['s']:>9.2f}{e['products']:>10}{e['error']:>13.1e}{ratio:>8}{unchecked:>11}")
        he = t["hessian_eigenthings"]
        out.append(f"    hessian_eigenthings at its defaults ({he['default_steps']} steps): max rel err "
                   f"{he['default_error']:.1e}, reports converged: {he['default_reports_converged']}")
        tr = r["trace"]
        out.append(f"  Hutch++, {tr['products']} products:")
        for peer in ("theorylab", "curvlinops_hutchpp", "curvlinops_xtrace", "hessian_eigenthings"):
            e = tr[peer]
            ratio = f"{e['theorylab_time_ratio']:.2f}" if peer != "theorylab" else ""
            out.append(f"    {peer:<36}{e['s']:>9.2f}  estimate {e['estimate']:<12.5g}{ratio:>8}")
        if "hutchinson_per_probe" in tr:
            h = tr["hutchinson_per_probe"]
            out.append(f"  Hutchinson per probe: theorylab {h['theorylab_s'] * 1e3:.2f} ms, PyHessian "
                       f"{h['pyhessian_s'] * 1e3:.2f} ms, ratio {h['ratio']:.2f}")
        if "lanczos" in r:
            lz = r["lanczos"]
            out.append("  100 Lanczos steps, time in projections / time in products (median of runs): " + ", ".join(
                f"{m} {lz[m]['reorthogonalization_share_of_product_time']:.0%} (run minus bare run "
                f"{lz[m]['run_difference_share']:.0%}; {lz[m]['runs'][0]['reorthogonalized_steps']} steps "
                "reorthogonalized)" for m in ("full", "partial")) + f"; the rest of a step {lz['none']['rest_of_step_share']:.0%}")
            slq = lz["slq_100x5"]
            out.append("  SLQ 100 x 5: " + ", ".join(f"{m} {slq[m]['s']:.2f} s (ghosts {sum(slq[m]['ghosts'])})"
                                                    for m in ("full", "partial", "none"))
                       + f"; PyHessian {slq['pyhessian']}")
    d = rows["dense_ggn"]
    out.append(f"\ndense GGN, MLP 64-32-10, P = {d['parameters']:,}: theorylab {d['theorylab_s']:.2f} s, curvlinops "
               f"{d['curvlinops_s']:.2f} s, ratio {d['ratio']:.2f} (max relative difference {d['max_relative_difference']:.1e})")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = run(resolve_device(args.device), args.repeats)
    print(_table(rows))
    if args.json:
        atomic_write_json(args.json, rows)


if __name__ == "__main__":
    main()
