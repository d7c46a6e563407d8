"""``theorylab fit``: fit a scaling law to a table of runs; write JSON, a Markdown report and figures."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from theorylab._io import atomic_write_json, atomic_write_text
from theorylab.fits.fitting import FORM_NAMES, fit
from theorylab.fits.forms import annealing_features
from theorylab.fits.io import read_table
from theorylab.fits.losses import LOSSES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="fit a scaling law to a table of runs",
                       description="Fit a scaling law (Chinchilla, power, Kaplan, broken, LR-annealing or an "
                                   "expression) to a table of runs; write fit.json (every number and choice), "
                                   "report.md and figures. Bad input ends with exit code 2.")
    p.add_argument("data", help="CSV, JSON lines or Parquet file, or - for stdin")
    p.add_argument("--form", default="chinchilla",
                   help=f"{' | '.join(FORM_NAMES)} or an expression such as 'E + A*N**-alpha' (default chinchilla)")
    p.add_argument("--x", nargs="+", metavar="COL",
                   help="input columns of the law (default: N D for chinchilla/kaplan, the first of N D C x for "
                        "power/broken; for an expression, its names that are columns)")
    p.add_argument("--y", default="loss", metavar="COL", help="response column (default loss)")
    p.add_argument("--loss", choices=LOSSES, default="huber", help="penalty on residuals (default huber)")
    p.add_argument("--delta", type=float, default=1e-3, help="Huber delta (default 1e-3)")
    p.add_argument("--space", choices=("log", "raw"), default="log", help="residuals of log or raw values")
    p.add_argument("--reduction", choices=("sum", "mean"), default="sum", help="sum (default) or mean of penalties")
    p.add_argument("--method", choices=("auto", "varpro", "lbfgs"), default="auto")
    p.add_argument("--starts", type=int, default=64, help="random starts of multi-start L-BFGS (default 64)")
    p.add_argument("--breaks", type=int, default=1, help="breaks of the broken power law (default 1)")
    p.add_argument("--group", metavar="COL", help="run-id column (bootstrap by runs; annealing curves)")
    p.add_argument("--decay", type=float, default=0.999, help="annealing momentum lambda (default 0.999)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N", help="bootstrap resamples (default none)")
    p.add_argument("--by", choices=("rows", "runs"), default="rows", help="bootstrap resampling unit")
    p.add_argument("--workers", type=int, default=1, help="processes for the bootstrap")
    p.add_argument("--backtest", type=float, metavar="Q",
                   help="fit rows below this quantile (0..1) of --backtest-on and test above it")
    p.add_argument("--backtest-on", metavar="COL", help="column of the backtest split (default C, else first x)")
    p.add_argument("--compute", type=float, nargs="+", metavar="C",
                   help="budgets for the compute-optimal allocation (two-variable laws; default 1e21..1e25)")
    p.add_argument("--out", type=Path, default=Path("fit_out"), help="output folder (default fit_out/)")
    p.add_argument("--format", choices=("json", "md"), default="md", help="what to print on stdout")
    p.add_argument("--data-format", choices=("auto", "csv", "jsonl", "parquet"), default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _annealing_table(table: pd.DataFrame, group: str | None, decay: float) -> pd.DataFrame:
    """Rows with the annealing features S1, S2 computed per run from the ``step`` and ``lr`` columns."""
    missing = [c for c in ("step", "lr") if c not in table.columns]
    if missing:
        raise ValueError(f"the annealing law needs columns step and lr (the learning rate of the update at "
                         f"that step); missing {missing}")
    parts = []
    for _, run in (table.groupby(group, sort=False) if group else [(None, table)]):
        run = run.sort_values("step")
        steps = run["step"].to_numpy()
        if not np.array_equal(steps, np.arange(steps[0], steps[0] + len(steps))) or steps[0] != 0:
            raise ValueError("the annealing law needs every step 0, 1, ..., T of each run (with its lr) to "
                             "compute S1 and S2; steps are missing or repeated")
        s1, s2 = annealing_features(run["lr"].to_numpy(dtype=float), decay=decay)
        run = run.assign(S1=s1[:-1], S2=s2[:-1])
        parts.append(run[run["S1"] > 0])
    return pd.concat(parts, ignore_index=True)


def run(args: argparse.Namespace) -> int:
    if args.bootstrap < 0 or args.workers < 1:
        raise ValueError("--bootstrap must be >= 0 and --workers >= 1")
    if args.backtest is not None and not 0 < args.backtest < 1:
        raise ValueError(f"--backtest is a quantile in (0, 1), got {args.backtest}")
    table = read_table(args.data, fmt=args.data_format)
    table.columns = [str(c) for c in table.columns]
    notes = []
    if args.form in ("chinchilla", "kaplan") and not args.x and "D" not in table.columns \
            and {"N", "C"} <= set(table.columns):
        table = table.assign(D=table["C"] / (6.0 * table["N"]))
        notes.append("D computed as C / (6 N)")
    if args.form == "annealing":
        table = _annealing_table(table, args.group, args.decay)
        notes.append(f"S1, S2 computed per run from step and lr (decay {args.decay})")
    result = fit(table, args.form, x=args.x, y=args.y, loss=args.loss, delta=args.delta, space=args.space,
                 reduction=args.reduction, method=args.method, starts=args.starts, breaks=args.breaks,
                 groups=args.group, seed=args.seed)
    out: dict[str, Any] = {"choices": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                                       if k != "func"},
                           "notes": notes, "fit": result.to_dict()}
    boot = None
    if args.bootstrap:
        boot = result.bootstrap(args.bootstrap, seed=args.seed, by=args.by, workers=args.workers, progress=True)
        out["bootstrap"] = boot.to_dict()
    back = result.backtest(quantile=args.backtest, on=args.backtest_on) if args.backtest is not None else None
    if back is not None:
        out["backtest"] = back.to_dict()
    optimal = None
    if len(result.variables) == 2 and args.form != "annealing":
        optimal = result.compute_optimal(args.compute or [1e21, 1e22, 1e23, 1e24, 1e25], bootstrap=boot)
        out["compute_optimal"] = optimal.to_dict()
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "fit.json", out)
    figures = _figures(result, boot, back, args.out)
    report = _markdown(result, boot, back, optimal, notes, figures)
    atomic_write_text(args.out / "report.md", report)
    if args.format == "json":
        stderr = {k: float(v) for k, v in zip(result.param_names, result.stderr)}
        print(json.dumps({"params": result.parameters, "stderr": stderr, "objective": result.objective,
                          "out": str(args.out)}, indent=2))
    else:
        print(report)
    return 0


def _figures(result: Any, boot: Any, back: Any, out: Path) -> list[str]:
    from theorylab.fits.plots import contour_figure, fit_figure, learning_curve_figure
    from theorylab.plotting import close, save_figure

    made = []
    figs = [("fitted_vs_observed", fit_figure(result))]
    if len(result.variables) == 2 and result.form["form"] != "annealing":
        figs.append(("contours", contour_figure(result).figure))
    if len(result.variables) == 1:
        figs.append(("learning_curve", learning_curve_figure(result, bootstrap=boot).figure))
    if boot is not None:
        figs.append(("bootstrap", boot.plot().figure))
    if back is not None:
        figs.append(("backtest", back.plot().figure))
    for name, fig in figs:
        save_figure(fig, out / name, provenance={"command": "theorylab fit"}, formats=("png",))
        close(fig)
        made.append(f"{name}.png")
    return made


def _markdown(result: Any, boot: Any, back: Any, optimal: Any, notes: list[str], figures: list[str]) -> str:
    lines = ["# theorylab fit", "", result.report()]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    if boot is not None:
        lines += ["", (f"Bootstrap ({boot.n_resamples} resamples by {boot.by}, {boot.n_failed} failed): "
                       f"{boot.level:.0%} intervals"), "", "| parameter | lower | upper |", "|---|---|---|"]
        lines += [f"| {k} | {lo:.6g} | {hi:.6g} |" for k, lo, hi in zip(boot.param_names, boot.lower, boot.upper)]
    if back is not None:
        lines += ["", (f"Backtest: fitted {back.n_train} rows with {back.on} <= {back.split:.4g}; on the "
                       f"{back.n_test} rows above, mean |relative error| {back.mean_abs_rel_error:.3%} "
                       f"(max {back.max_abs_rel_error:.3%}; in-sample {back.in_sample_mean_abs_rel_error:.3%}).")]
    if optimal is not None:
        lines += ["", f"Compute-optimal allocation ({optimal.method}; intervals: {optimal.interval_method})", "",
                  "| C | N* | D* | D*/N* | L* |", "|---|---|---|---|---|"]
        for i, c in enumerate(optimal.C):
            lines.append(f"| {c:.3g} | {optimal.N_opt[i]:.4g} [{optimal.lower['N_opt'][i]:.3g}, "
                         f"{optimal.upper['N_opt'][i]:.3g}] | {optimal.D_opt[i]:.4g} | "
                         f"{optimal.tokens_per_param[i]:.3g} | {optimal.L_opt[i]:.4g} |")
    lines += ["", "Figures: " + ", ".join(figures), "All numbers and choices: fit.json."]
    return "\n".join(lines) + "\n"
