"""Reading tables of runs: CSV (comma, semicolon, tab or bar separated), JSON lines or Parquet, plain
or gzip-compressed, from a path or stdin (``-``).

What a file holds is read from its bytes, not only its name: gzip is decompressed, text is decoded
as UTF-8 (with or without a byte-order mark) or UTF-16 (with one), the CSV separator is sniffed
from the first lines (a semicolon file with decimal commas, as spreadsheets write in many locales,
is read as such), and a workbook or a Parquet file renamed ``.csv`` is named as what it is.
Column names are stripped of surrounding spaces.  Unreadable input raises a ValueError naming the
problem.
"""
from __future__ import annotations

import gzip
import io
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import pandas as pd

TableFormat = Literal["auto", "csv", "jsonl", "parquet"]
SEPARATORS = (",", ";", "\t", "|")
_SEPARATOR_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "bar"}
#: leading bytes of files that are not text tables, and what they are
_NOT_TEXT = {
    b"PK\x03\x04": "a ZIP archive (an Excel .xlsx workbook?): save the sheet as CSV",
    b"\xd0\xcf\x11\xe0": "an Excel 97-2003 workbook (.xls): save the sheet as CSV",
    b"PAR1": "a Parquet file: give it the suffix .parquet (or --data-format parquet)",
    b"%PDF": "a PDF document",
}
_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
             ".parquet": "parquet", ".pq": "parquet"}
_DECIMAL_COMMA = re.compile(r"^\s*-?\d+,\d+([eE][-+]?\d+)?\s*$")


def read_table(source: str | Path, *, fmt: TableFormat = "auto") -> pd.DataFrame:
    """A DataFrame from ``source``: a ``.csv``/``.tsv``, ``.jsonl``/``.json`` (JSON lines) or
    ``.parquet`` file (each optionally ``.gz``), or ``-`` for stdin (JSON lines when the text
    starts with ``{``, else CSV).

    Parquet needs pyarrow (``pip install 'theorylab[parquet]'``).
    """
    if fmt not in ("auto", "csv", "jsonl", "parquet"):
        raise ValueError(f"format must be auto, csv, jsonl or parquet, got {fmt!r}")
    if str(source) == "-":
        if fmt == "parquet":
            raise ValueError("Parquet cannot be read from stdin; pass a file path")
        stream = getattr(sys.stdin, "buffer", None)  # bytes where there are any (a redirected stdin)
        data, name = (stream.read() if stream is not None else sys.stdin.read().encode("utf-8")), "stdin"
        kind = fmt
    else:
        path = Path(source)
        if path.is_dir():
            raise ValueError(f"{path} is a folder, not a data file")
        if not path.exists():
            raise FileNotFoundError(f"no such data file: {path}")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
        name = path.name
        kind = fmt if fmt != "auto" else _kind_from_suffix(path)
    data = _decompressed(data, name)
    if kind == "parquet" or (kind == "auto" and data.startswith(b"PAR1")):
        return _read_parquet(data, name)
    for magic, what in _NOT_TEXT.items():
        if data.startswith(magic):
            raise ValueError(f"{name} is not a text table: it looks like {what}")
    text = _decoded(data, name)
    if kind == "auto":
        kind = "jsonl" if text.lstrip().startswith("{") else "csv"
    table = _parse_text(text, kind, name)
    table.columns = [str(c).strip() for c in table.columns]
    return table


def _kind_from_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return _SUFFIXES.get(suffixes[-1], "auto") if suffixes else "auto"


def _decompressed(data: bytes, name: str) -> bytes:
    if not data.startswith(b"\x1f\x8b"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise ValueError(f"{name} looks gzip-compressed but cannot be decompressed: {exc}") from None


def _decoded(data: bytes, name: str) -> str:
    """Text from UTF-8 (optional byte-order mark) or UTF-16 with a byte-order mark."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name} is not UTF-8 or UTF-16 text (byte {data[exc.start]:#04x} at position "
                         f"{exc.start}); save it as UTF-8 CSV") from None


def _read_parquet(data: bytes, name: str) -> pd.DataFrame:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ValueError("reading Parquet needs pyarrow: pip install 'theorylab[parquet]'") from None
    try:
        return pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 -- any reader failure is bad input
        raise ValueError(f"cannot read {name} as Parquet: {_first_line(exc)}") from None


def sniff_separator(text: str) -> str:
    """The separator of a CSV text: the candidate found the same non-zero number of times on each of
    the first lines (the most frequent such one), else a comma."""
    lines = [line for line in text.splitlines()[:20] if line.strip()]
    best, best_count = ",", 0
    for sep in SEPARATORS:
        counts = {line.count(sep) for line in lines}
        if len(counts) == 1 and (count := counts.pop()) > best_count:
            best, best_count = sep, count
    return best


def _parse_text(text: str, kind: str, name: str) -> pd.DataFrame:
    if not text.strip():
        raise ValueError(f"{name} is empty")
    try:
        if kind == "jsonl":
            table = pd.read_json(io.StringIO(text), lines=True)
        else:
            sep = sniff_separator(text)
            table = pd.read_csv(io.StringIO(text), sep=sep, decimal=_decimal_mark(text, sep))
    except Exception as exc:  # noqa: BLE001 -- any parser failure is bad input
        raise ValueError(f"cannot read {name} as {kind.upper()}: {_first_line(exc)}") from None
    if table.empty:
        raise ValueError(f"{name} has no rows")
    return table


def _decimal_mark(text: str, sep: str) -> str:
    """``","`` for a semicolon- or tab-separated text whose numbers use decimal commas, else ``"."``."""
    if sep == ",":
        return "."
    fields = [f for line in text.splitlines()[1:21] for f in line.split(sep)]
    return "," if any(_DECIMAL_COMMA.match(f) for f in fields) else "."


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def match_columns(table: pd.DataFrame, wanted: Iterable[str]) -> pd.DataFrame:
    """Rename columns that differ from a ``wanted`` name only in case or spaces to that name.

    A wanted name that is a column already is left alone; one that matches no column is left for
    the caller to report; one that matches several raises (the table is ambiguous).
    """
    columns = [str(c) for c in table.columns]
    renames: dict[str, str] = {}
    for name in dict.fromkeys(w for w in wanted if w):
        if name in columns:
            continue
        key = _fold(name)
        matches = [c for c in columns if _fold(c) == key]
        if len(matches) > 1:
            raise ValueError(f"columns {matches} all match {name!r} (ignoring case and spaces); rename them")
        if matches:
            renames[matches[0]] = name
    return table.rename(columns=renames) if renames else table


def _fold(name: str) -> str:
    return "".join(name.split()).casefold()
