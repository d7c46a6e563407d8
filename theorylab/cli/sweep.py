"""``theorylab sweep status DIR`` and ``theorylab sweep collect DIR --to table.csv``.

The table is written atomically (never half a file); the sweep library is imported when the
command runs, not to show its help.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

STATUSES = ("all", "ok", "failed")
INTERRUPTED = "interrupted; nothing was written"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="inspect a sweep's results store and export its table",
                       description="Inspect the results store of a sweep (theorylab.sweep.sweep with out_dir=DIR).")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="runs done, failed and pending per sweep; damaged records",
                                description="Count the runs of every sweep stored in DIR and check every "
                                            "record's checksum. Exit code 1 if a record is corrupt.")
    status.add_argument("dir", type=Path, metavar="DIR")
    status.set_defaults(func=run_status)
    collect = actions.add_parser("collect", help="write the runs as a table (one row per run)",
                                 description="Write one row per finished run (configuration, scalar results, "
                                             "status, error, wall time) to a .csv or .parquet file.")
    collect.add_argument("dir", type=Path, metavar="DIR")
    collect.add_argument("--to", type=Path, required=True, metavar="FILE", help="output table: .csv or .parquet")
    collect.add_argument("--sweep", default=None, metavar="ID",
                         help="only this sweep (id or unique prefix, see 'status'); default: every run in DIR")
    collect.add_argument("--status", choices=STATUSES, default="all", help="which runs to write (default all)")
    collect.set_defaults(func=run_collect)


def run_status(args: argparse.Namespace) -> int:
    from theorylab.sweep import sweep_status

    report = sweep_status(args.dir)
    print(report.format())
    return 1 if report.corrupt else 0


def run_collect(args: argparse.Namespace) -> int:
    from theorylab._io import atomic_write_bytes
    from theorylab.sweep import load_sweep

    suffix = args.to.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"--to must end in .csv or .parquet, got {args.to}")
    if args.to.is_dir():
        raise ValueError(f"--to {args.to} is a folder; give a file name")
    table = load_sweep(args.dir, sweep_id=args.sweep).table()
    if args.status != "all" and len(table):
        table = table[table["status"] == args.status]
    if suffix == ".csv":
        data = table.to_csv(index=False).encode("utf-8")
    else:
        buffer = io.BytesIO()
        try:
            table.to_parquet(buffer, index=False)
        except ImportError as exc:
            raise ValueError(f"writing parquet needs pyarrow: pip install 'theorylab[parquet]' ({exc})") from None
        data = buffer.getvalue()
    atomic_write_bytes(args.to, data)
    print(f"{len(table)} run(s) -> {args.to}", file=sys.stderr)
    return 0
