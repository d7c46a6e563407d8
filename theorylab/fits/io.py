"""Reading tables of runs: CSV, JSON lines or Parquet, from a path or stdin (``-``)."""
from __future__ import annotations

import io
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import pandas as pd

TableFormat = Literal["auto", "csv", "jsonl", "parquet"]


def read_table(source: str | Path, *, fmt: TableFormat = "auto") -> pd.DataFrame:
    """A DataFrame from ``source``: a ``.csv``, ``.jsonl``/``.json`` (JSON lines) or ``.parquet`` file,
    or ``-`` for stdin (JSON lines when the text starts with ``{``, else CSV).

    Parquet needs pyarrow (``pip install 'theorylab[parquet]'``).  Unreadable input raises a
    ValueError naming the problem.
    """
    if fmt not in ("auto", "csv", "jsonl", "parquet"):
        raise ValueError(f"format must be auto, csv, jsonl or parquet, got {fmt!r}")
    if str(source) == "-":
        text = sys.stdin.read()
        if fmt == "parquet":
            raise ValueError("Parquet cannot be read from stdin; pass a file path")
        kind = fmt if fmt != "auto" else ("jsonl" if text.lstrip().startswith("{") else "csv")
        return _parse_text(text, kind, "stdin")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    kind = fmt
    if kind == "auto":
        suffix = path.suffix.lower()
        kind = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
                ".parquet": "parquet", ".pq": "parquet"}.get(suffix, "")
        if not kind:
            raise ValueError(f"cannot tell the format of {path.name!r} from its suffix; "
                             "use .csv, .jsonl or .parquet (or --data-format)")
    if kind == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError("reading Parquet needs pyarrow: pip install 'theorylab[parquet]'") from None
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 -- any reader failure is bad input
            raise ValueError(f"cannot read {path.name} as Parquet: {exc}") from None
    return _parse_text(path.read_text(), kind, path.name)


def _parse_text(text: str, kind: str, name: str) -> pd.DataFrame:
    if not text.strip():
        raise ValueError(f"{name} is empty")
    try:
        if kind == "jsonl":
            table = pd.read_json(io.StringIO(text), lines=True)
        else:
            table = pd.read_csv(io.StringIO(text))
    except Exception as exc:  # noqa: BLE001 -- any parser failure is bad input
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot read {name} as {kind.upper()}: {first}") from None
    if table.empty:
        raise ValueError(f"{name} has no rows")
    return table


def rename_columns(table: pd.DataFrame, mapping: Mapping[str, str]) -> pd.DataFrame:
    """Rename ``{standard name: column in the table}`` (e.g. ``{"N": "params"}``), checking the columns exist."""
    missing = [col for col in mapping.values() if col not in table.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}; the table has {list(table.columns)}")
    return table.rename(columns={col: std for std, col in mapping.items() if col != std})
