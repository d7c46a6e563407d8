"""``theorylab fit``: fit a scaling law to a table of runs; write JSON, a Markdown report and figures.

Every output is built in memory and written at the end (:func:`theorylab._io.publish_outputs`):
bad input or Ctrl-C leaves no partial output, and a reused ``--out`` folder keeps no stale figure
of an earlier run.  The numerical libraries are imported when the command runs, not to show its help.
"""
from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path
from typing import Any

from theorylab.fits.choices import FORM_NAMES, LOSSES, check_form_name

FIGURES = ("fitted_vs_observed", "contours", "learning_curve", "bootstrap", "backtest")
#: every file the command writes into --out (any other file there is left alone)
OUTPUTS = ("fit.json", "report.md", *(f"{name}.{ext}" for name in FIGURES for ext in ("png", "json")))
INTERRUPTED = "interrupted; nothing was written (outputs are written only when the fit completes)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="fit a scaling law to a table of runs",
                       description="Fit a scaling law (Chinchilla, power, Kaplan, broken, LR-annealing or an "
                                   "expression) to a table of runs; write fit.json (every number and choice), "
                                   "report.md and figures. Bad input ends with exit code 2.")
    p.add_argument("data", help="CSV (comma, semicolon, tab), JSON lines or Parquet file, optionally gzipped, "
                                "or - for stdin")
    p.add_argument("--form", default="chinchilla",
                   help=f"{' | '.join(FORM_NAMES)} or an expression such as 'E + A*N**-alpha' (default chinchilla)")
    p.add_argument("--x", nargs="+", metavar="COL",
                   help="input columns of the law (default: N D for chinchilla/kaplan, the first of N D C x for "
                        "power/broken; for an expression, its names that are columns)")
    p.add_argument("--y", default="loss", metavar="COL", help="response column (default loss)")
    p.add_argument("--init", nargs="+", type=_assignment, metavar="NAME=VALUE", default=[],
                   help="starting values of parameters, e.g. --init Nc=1e13 alpha=0.1 (run as one more start)")
    p.add_argument("--bounds", nargs="+", type=_interval, metavar="NAME=LOW:HIGH", default=[],
                   help="bounds of parameters, either side may be empty, e.g. --bounds alpha=0: E=1e-3:10 "
                        "(an expression's parameter with LOW > 0 is fitted in log coordinates)")
    p.add_argument("--penalty", choices=LOSSES, default="huber", help="penalty on residuals (default huber)")
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
    p.add_argument("--out", type=Path, default=Path("fit_out"),
                   help="output folder (default fit_out/); files of an earlier fit there are replaced")
    p.add_argument("--format", choices=("json", "md"), default="md", help="what to print on stdout")
    p.add_argument("--data-format", choices=("auto", "csv", "jsonl", "parquet"), default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _assignment(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or not name.strip() or not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"expected NAME=NUMBER, got {text!r}")
    return name.strip(), number


def _interval(text: str) -> tuple[str, tuple[float | None, float | None]]:
    name, sep, span = text.partition("=")
    low, colon, high = span.partition(":")
    try:
        pair = tuple(None if not s.strip() else float(s) for s in (low, high))
    except ValueError:
        pair = ()
    if not sep or not colon or not name.strip() or len(pair) != 2:
        raise argparse.ArgumentTypeError(f"expected NAME=LOW:HIGH (either side may be empty), got {text!r}")
    return name.strip(), pair  # type: ignore[return-value]


def _wanted_columns(args: argparse.Namespace) -> list[str]:
    """The column names the command will look for (matched ignoring case and spaces)."""
    if args.x:
        variables = list(args.x)
    elif args.form in ("chinchilla", "kaplan"):
        variables = ["N", "D", "C"]
    elif args.form in ("power", "broken"):
        variables = ["N", "D", "C", "x"]
    elif args.form == "annealing":
        variables = ["step", "lr"]
    else:
        variables = []
    return [*variables, args.y, args.group, args.backtest_on]


def _annealing_table(table: Any, group: str | None, decay: float) -> Any:
    """Rows with the annealing features S1, S2 computed per run from the ``step`` and ``lr`` columns."""
    import numpy as np
    import pandas as pd

    from theorylab.fits.forms import annealing_features

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
    import sys

    from theorylab.fits.io import match_columns, read_table

    if args.bootstrap < 0 or args.workers < 1:
        raise ValueError("--bootstrap must be >= 0 and --workers >= 1")
    if args.backtest is not None and not 0 < args.backtest < 1:
        raise ValueError(f"--backtest is a quantile in (0, 1), got {args.backtest}")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file; give a folder (it is created if missing)")
    check_form_name(args.form)
    table = match_columns(read_table(args.data, fmt=args.data_format), _wanted_columns(args))
    notes = []
    if args.form in ("chinchilla", "kaplan") and not args.x and "D" not in table.columns \
            and {"N", "C"} <= set(table.columns):
        table = table.assign(D=table["C"] / (6.0 * table["N"]))
        notes.append("D computed as C / (6 N)")
    if args.form == "annealing":
        table = _annealing_table(table, args.group, args.decay)
        notes.append(f"S1, S2 computed per run from step and lr (decay {args.decay})")
    from theorylab._io import json_bytes, publish_outputs  # the fitting library loads once the table is read
    from theorylab.fits.diagnostics import SuspectFitWarning
    from theorylab.fits.fitting import fit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SuspectFitWarning)  # printed below, one line each
        result = fit(table, args.form, x=args.x, y=args.y, penalty=args.penalty, delta=args.delta, space=args.space,
                     reduction=args.reduction, method=args.method, starts=args.starts, breaks=args.breaks,
                     groups=args.group, init=dict(args.init), bounds=dict(args.bounds), seed=args.seed)
    out: dict[str, Any] = {"choices": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                                       if k != "func"},
                           "notes": notes, "fit": result.to_dict()}
    boot = None
    if args.bootstrap:
        boot = result.bootstrap(args.bootstrap, seed=args.seed, by=args.by, workers=args.workers)
        out["bootstrap"] = boot.to_dict()
    back = result.backtest(quantile=args.backtest, on=args.backtest_on) if args.backtest is not None else None
    if back is not None:
        out["backtest"] = back.to_dict()
    optimal = None
    if len(result.variables) == 2 and args.form != "annealing":
        optimal = result.compute_optimal(args.compute or [1e21, 1e22, 1e23, 1e24, 1e25], bootstrap=boot)
        out["compute_optimal"] = optimal.to_dict()
    figures = _figures(result, boot, back)
    report = _markdown(result, boot, back, optimal, notes, sorted(n for n in figures if n.endswith(".png")))
    publish_outputs(args.out, {"fit.json": json_bytes(out), "report.md": report.encode("utf-8"), **figures},
                    owned=OUTPUTS)
    for warning in result.warnings:
        print(f"theorylab fit: warning: {warning}", file=sys.stderr)
    if args.format == "json":
        stderr = {k: float(v) for k, v in zip(result.param_names, result.stderr)}
        print(json.dumps({"params": result.parameters, "stderr": stderr, "objective": result.objective,
                          "warnings": list(result.warnings), "out": str(args.out)}, indent=2))
    else:
        print(report)
    return 0


def _figures(result: Any, boot: Any, back: Any) -> dict[str, bytes]:
    """The figure files (PNG and provenance JSON), in memory."""
    from theorylab.fits.plots import contour_figure, fit_figure, learning_curve_figure
    from theorylab.plotting import close, render_figure

    figs = [("fitted_vs_observed", fit_figure(result))]
    if len(result.variables) == 2 and result.form["form"] != "annealing":
        figs.append(("contours", contour_figure(result).figure))
    if len(result.variables) == 1:
        figs.append(("learning_curve", learning_curve_figure(result, bootstrap=boot).figure))
    if boot is not None:
        figs.append(("bootstrap", boot.plot().figure))
    if back is not None:
        figs.append(("backtest", back.plot().figure))
    files: dict[str, bytes] = {}
    for name, fig in figs:
        files.update(render_figure(fig, name, provenance={"command": "theorylab fit"}, formats=("png",)))
        close(fig)
    return files


def _markdown(result: Any, boot: Any, back: Any, optimal: Any, notes: list[str], figures: list[str]) -> str:
    lines = ["# theorylab fit", "", result.report()]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    if boot is not None:
        lines += ["", (f"Bootstrap ({boot.num_resamples} resamples by {boot.by}, {boot.num_failed} failed): "
                       f"{boot.level:.0%} intervals"), "", "| parameter | lower | upper |", "|---|---|---|"]
        lines += [f"| {k} | {lo:.6g} | {hi:.6g} |" for k, lo, hi in zip(boot.param_names, boot.lower, boot.upper)]
    if back is not None:
        lines += ["", (f"Backtest: fitted {back.num_train} rows with {back.on} <= {back.split:.4g}; on the "
                       f"{back.num_test} rows above, mean |relative error| {back.mean_abs_rel_error:.3%} "
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
