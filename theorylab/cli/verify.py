"""``theorylab verify``: run the claims of ``analyses/`` and write figures and REPORT.md."""
from __future__ import annotations

import argparse
from pathlib import Path

from theorylab.claims import SCALES, load_analyses, select, verify
from theorylab.devices import resolve_device


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="run the claims from papers and write a report",
                       description="Run each claim's experiment, compare the measurement with the "
                                   "paper's prediction, and write one figure per claim, "
                                   "results.json and REPORT.md. Finished claims are reused on re-run.")
    p.add_argument("--scale", choices=SCALES, default="quick",
                   help="quick: CPU, under a minute per claim; full: the paper's setting (GPU)")
    p.add_argument("--only", nargs="+", metavar="ID", help="run only these claim ids")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: figures/ for quick, figures/full/ for full)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="recompute claims whose evidence is on disk")
    p.add_argument("--analyses", type=Path, default=None, help="folder of claim modules")
    p.add_argument("--list", action="store_true", help="list the claims and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    registry = load_analyses(args.analyses)
    claims = select(args.only, registry)
    if args.list:
        for c in claims:
            print(f"{c.id:32s} {c.title}  [{c.citation}]")
        return 0
    out = args.out or (Path("figures") if args.scale == "quick" else Path("figures") / "full")
    evidences = verify(claims, scale=args.scale, out_dir=out, device=resolve_device(args.device),
                       seed=args.seed, force=args.force)
    print(f"report: {out / 'REPORT.md'}")
    return 1 if any(e.verdict == "error" for e in evidences) else 0
