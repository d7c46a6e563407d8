"""``theorylab verify``: run the claims shipped with theorylab (and your own) and write REPORT.md."""
from __future__ import annotations

import argparse
from pathlib import Path

SCALES = ("quick", "full")  # theorylab.claims.SCALES, repeated so that --help imports nothing heavy
FIGURES = Path("figures")
INTERRUPTED = "interrupted; every claim that finished is kept in evidence/, run again to resume"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="run the claims from papers and write a report",
                       description="Run each claim's experiment and its negative control, compare the "
                                   "measurement with the paper's prediction, and write one figure per claim, "
                                   "results.json and REPORT.md. Finished claims are reused on re-run.")
    p.add_argument("--scale", choices=SCALES, default="quick",
                   help="quick: CPU, minutes for the whole suite; full: the paper's setting (GPU)")
    p.add_argument("--only", nargs="+", metavar="ID", help="run only these claim ids")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: figures/ for quick, figures/full/ for full)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--force", action="store_true",
                   help="recompute claims whose evidence is cached, and allow replacing the committed "
                        "full-scale results in figures/full/")
    p.add_argument("--analyses", type=Path, action="append", default=[], metavar="DIR",
                   help="also load the claims of the *.py modules in DIR (repeatable)")
    p.add_argument("--list", action="store_true", help="list the claims and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from theorylab.claims import check_device, load_analyses, select, verify
    from theorylab.devices import resolve_device

    device = None if args.list else check_device(resolve_device(args.device))
    claims = select(args.only, load_analyses(*args.analyses))
    if args.list:
        for c in claims:
            print(f"{c.id:40s} {c.title}  [{c.citation}]")
        return 0
    out = args.out or (FIGURES if args.scale == "quick" else FIGURES / "full")
    if args.out is None and args.scale == "full" and not args.force and _holds_committed_results(out):
        raise ValueError(f"{out} holds recorded full-scale results; pass --out DIR to write elsewhere or --force "
                         "to replace them")
    compare = (FIGURES / "full" if args.scale == "quick" else FIGURES) if args.out is None else None
    evidences = verify(claims, scale=args.scale, out_dir=out, device=device, seed=args.seed, force=args.force,
                       compare_with=compare)
    print(f"report: {out / 'REPORT.md'}")
    return 1 if any(e.verdict == "error" for e in evidences) else 0


def _holds_committed_results(out: Path) -> bool:
    """Recorded results and no evidence cache: replacing them must be asked for (a cache means a local
    full-scale run was started there, which may resume)."""
    cache = out / "evidence"
    return (out / "results.json").exists() and not (cache.is_dir() and any(cache.glob("*.json")))
