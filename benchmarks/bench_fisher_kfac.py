"""Fisher, empirical Fisher and K-FAC: theorylab vs curvlinops 3, side by side in one run.

Model: MLP 784-256-256-10 (ReLU), 512 N(0, 1) inputs with random labels, mean cross-entropy,
float32, on one thread (the timings of a loaded machine are steadier single-threaded; the ratios
are what matters).  The data is passed as one batch (theorylab keeps the graph of a single batch
between products) and as a loader of two batches of 256 (no graph kept).  Measures the time of one
product with one vector for the GGN / exact Fisher, the Monte-Carlo Fisher (1 label per input), the
empirical Fisher and K-FAC, and the time to build K-FAC's factors; each row also gives the largest
relative difference between the two libraries' products (the Monte-Carlo Fisher draws different
labels, so it is compared through its distance to the exact Fisher instead).

Run: ``.venv/bin/python benchmarks/bench_fisher_kfac.py [--json PATH]`` (needs ``curvlinops``: ``make bench``
installs it).
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import curvlinops
from theorylab.curvature import empirical_fisher, fisher, ggn, kfac
from theorylab.devices import single_threaded


def _problem(batches: int) -> tuple[nn.Module, nn.Module, Any]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(512, 784, generator=g), torch.randint(0, 10, (512,), generator=g)
    data = (x, y) if batches == 1 else [(x[i::batches], y[i::batches]) for i in range(batches)]
    return model, nn.CrossEntropyLoss(), data


def _min_times(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Fastest of ``repeats`` timings of each function, interleaved so that both see the same load."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def run(repeats: int) -> list[dict[str, Any]]:
    rows = []
    for batches in (1, 2):
        model, loss, data = _problem(batches)
        params = list(model.parameters())
        batch_list = [data] if batches == 1 else data
        v = torch.randn(sum(p.numel() for p in params), generator=torch.Generator().manual_seed(2))
        label = "one batch of 512" if batches == 1 else "two batches of 256"
        exact = fisher(model, loss, data)
        theirs_ggn = curvlinops.GGNLinearOperator(model, loss, params, batch_list, check_deterministic=False)
        ours_mc = fisher(model, loss, data, num_draws=1, seed=0)
        theirs_mc = curvlinops.FisherMCLinearOperator(model, loss, params, batch_list, mc_samples=1,
                                                      check_deterministic=False)
        pairs = {
            "GGN product": (ggn(model, loss, data), theirs_ggn),
            "exact Fisher product": (exact, theirs_ggn),
            "empirical Fisher product": (empirical_fisher(model, loss, data),
                                         curvlinops.EFLinearOperator(model, loss, params, batch_list,
                                                                     check_deterministic=False)),
            "K-FAC product": (kfac(model, loss, data),
                              curvlinops.KFACLinearOperator(model, loss, params, batch_list, fisher_type="type-2",
                                                            separate_weight_and_bias=False,
                                                            check_deterministic=False)),
        }
        reference = exact @ v
        for name, (ours, theirs) in pairs.items():
            t = _min_times({"ours": lambda o=ours: o @ v, "theirs": lambda t=theirs: t @ v}, repeats)
            rows.append({"data": label, "what": name, "theorylab_s": t["ours"], "curvlinops_s": t["theirs"],
                         "ratio": t["ours"] / t["theirs"], "max_rel_diff": _relative(ours @ v, theirs @ v)})
        t = _min_times({"ours": lambda: ours_mc @ v, "theirs": lambda: theirs_mc @ v}, repeats)
        rows.append({"data": label, "what": "Monte-Carlo Fisher product (1 label)", "theorylab_s": t["ours"],
                     "curvlinops_s": t["theirs"], "ratio": t["ours"] / t["theirs"],
                     "max_rel_diff": None, "ours_vs_exact": _relative(ours_mc @ v, reference),
                     "theirs_vs_exact": _relative(theirs_mc @ v, reference)})
        def their_factors(batch_list: list = batch_list) -> None:  # curvlinops builds them on first use
            curvlinops.KFACLinearOperator(model, loss, params, batch_list, fisher_type="type-2",
                                          separate_weight_and_bias=False,
                                          check_deterministic=False).compute_kronecker_factors()

        t = _min_times({"ours": lambda: kfac(model, loss, data), "theirs": their_factors}, repeats)
        rows.append({"data": label, "what": "K-FAC factors (exact, 10 classes)", "theorylab_s": t["ours"],
                     "curvlinops_s": t["theirs"], "ratio": t["ours"] / t["theirs"], "max_rel_diff": None})
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'data':20s} {'what':38s} {'theorylab':>10s} {'curvlinops':>10s} {'ratio':>6s} {'rel diff':>9s}"]
    for r in rows:
        diff = "" if r["max_rel_diff"] is None else f"{r['max_rel_diff']:.1e}"
        if "ours_vs_exact" in r:
            diff = f"{r['ours_vs_exact']:.2f}/{r['theirs_vs_exact']:.2f}"
        lines.append(f"{r['data']:20s} {r['what']:38s} {r['theorylab_s'] * 1e3:8.1f}ms {r['curvlinops_s'] * 1e3:8.1f}ms "
                     f"{r['ratio']:6.2f} {diff:>9s}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    with single_threaded():
        rows = run(args.repeats)
    print("one thread; ratio = theorylab time / curvlinops time (below 1: theorylab faster); rel diff: largest "
          "relative difference of the products (Monte-Carlo: each library's distance to the exact Fisher)")
    print(_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": 1, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
