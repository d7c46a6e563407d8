"""SweepResult: the records of a sweep, and their table (one row per run) for plotting and fits."""
from __future__ import annotations

from typing import Any

from theorylab.results import Result, _decode, _encode, result_class

#: table columns that are not configuration or result values
RESERVED = ("key", "status", "error", "wall_time_s")


@result_class
class SweepResult(Result):
    """The runs of a sweep, in the order of its configurations.

    Each record is a dict with ``key`` (hash of configuration + code version), ``config``,
    ``status`` ("ok" or "failed"), ``result`` (what the function returned: a dict, or a theorylab
    Result when its class is imported; None if failed), ``error`` (the traceback text of a failed
    run, else None), ``wall_time_s``, ``code_version``, ``finished_utc``, ``host`` and ``pid``.
    ``out_dir`` is the results store (None for a sweep kept in memory).
    """

    records: list[dict[str, Any]]
    out_dir: str | None = None

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The records of the runs that raised."""
        return [r for r in self.records if r["status"] == "failed"]

    def __repr__(self) -> str:
        return (f"SweepResult(runs={len(self.records)}, ok={len(self.records) - len(self.failed)}, "
                f"failed={len(self.failed)}, out_dir={self.out_dir!r})")

    def table(self) -> Any:
        """A pandas DataFrame, one row per run.

        Columns: ``key``, the configuration (nested dicts flattened to ``a.b``, lists as tuples),
        ``status``, every scalar of the result (nested dicts and Results flattened to ``a.b``;
        arrays and lists are left out, they stay in :attr:`records`), ``error`` (the last line of
        the traceback) and ``wall_time_s``.  A result column whose name is taken by the configuration or by a column
        above is prefixed with ``result.``, a configuration column named like one of the four fixed
        columns with ``config.``.  Non-finite floats (a diverged loss) are kept as NaN/inf.
        """
        import pandas as pd

        configs = [{f"config.{k}" if k in RESERVED else k: v for k, v in flatten(r["config"], keep_lists=True).items()}
                   for r in self.records]
        results = [flatten(_encode(r["result"])) if r["result"] is not None else {} for r in self.records]
        config_columns = list(dict.fromkeys(c for config in configs for c in config))
        taken = set(config_columns) | set(RESERVED)
        rows = []
        for record, config, result in zip(self.records, configs, results):
            error = record["error"]
            rows.append({"key": record["key"], **config, "status": record["status"],
                         **{f"result.{k}" if k in taken else k: v for k, v in result.items()},
                         "error": error.strip().splitlines()[-1] if error else None,
                         "wall_time_s": record["wall_time_s"]})
        result_columns = list(dict.fromkeys(c for row in rows for c in row
                                            if c not in taken and c not in config_columns))
        return pd.DataFrame(rows, columns=["key", *config_columns, "status", *result_columns, "error",
                                           "wall_time_s"])

    def _repr_html_(self) -> str:
        return f"<p>{self!r}</p>" + self.table()._repr_html_()


def flatten(value: dict[str, Any], prefix: str = "", *, keep_lists: bool = False) -> dict[str, Any]:
    """Scalars of a JSON-encoded dict as ``{"a.b": value}``; arrays and lists are skipped
    (lists are kept as tuples with ``keep_lists``, as in configurations: ``widths=(64, 64)``).

    An encoded Result (a dict with ``type`` and ``meta``) contributes its fields, not its type or
    provenance; an encoded non-finite float (``{"__float__": "nan"}``) becomes the float.
    """
    out: dict[str, Any] = {}
    if _is_encoded_result(value):
        value = {k: v for k, v in value.items() if k not in ("type", "meta")}
    for name, item in value.items():
        column = f"{prefix}{name}"
        if isinstance(item, dict) and "__float__" in item:
            out[column] = _decode(item)
        elif isinstance(item, dict) and "__ndarray__" not in item:
            out.update(flatten(item, column + ".", keep_lists=keep_lists))
        elif isinstance(item, list) and keep_lists:
            out[column] = tuple(item)
        elif item is None or isinstance(item, (bool, int, float, str)):
            out[column] = item
    return out


def _is_encoded_result(value: dict[str, Any]) -> bool:
    return isinstance(value.get("type"), str) and isinstance(value.get("meta"), dict)


def decode_record(record: dict[str, Any]) -> dict[str, Any]:
    """A stored (JSON) record with its result decoded: arrays, non-finite floats, Results."""
    return {**record, "result": _decode(record["result"]) if record["result"] is not None else None}
