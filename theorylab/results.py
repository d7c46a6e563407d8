"""Result objects: frozen, typed, JSON round-trippable records that plot themselves.

Every analyzer returns one Result subclass (one return type per function).  A Result

* is a frozen dataclass (declare it with :func:`result_class`);
* serialises with ``to_dict()`` / ``from_dict()`` (JSON-safe: arrays, non-finite floats and nested
  Results are encoded explicitly) and ``save(path)`` / ``load(path)`` (atomic writes);
* carries ``meta``: provenance (version, commit, seed, dtype, device, wall time, operator products);
* shows itself: a short ``repr``, an HTML table with its figure in Jupyter, and ``plot(ax=None)``.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from theorylab._io import atomic_write_json

R = TypeVar("R", bound="Result")
_REGISTRY: dict[str, type["Result"]] = {}


def result_class(cls: type[R]) -> type[R]:
    """Class decorator for Result subclasses: a frozen dataclass registered for ``from_dict``."""
    cls = dataclass(frozen=True, eq=False, repr=False)(cls)
    _REGISTRY[cls.__name__] = cls
    return cls


@dataclass(frozen=True, eq=False, repr=False)
class Result:
    """Base class of all results.  Subclasses add typed fields and override :meth:`plot`."""

    meta: dict[str, Any] = field(default_factory=dict, kw_only=True)

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: ``{"type": ClassName, field: encoded value, ...}``."""
        out: dict[str, Any] = {"type": type(self).__name__}
        for f in dataclasses.fields(self):
            out[f.name] = _encode(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        """Rebuild a Result from :meth:`to_dict` output (the class is read from ``data["type"]``)."""
        if not isinstance(data, dict) or "type" not in data:
            raise ValueError("not a serialised Result: expected a dict with a 'type' key")
        target = _REGISTRY.get(data["type"])
        if target is None:  # a class of a module not imported yet (theorylab imports lazily)
            _import_library()
            target = _REGISTRY.get(data["type"])
        if target is None:
            raise ValueError(f"unknown Result type {data['type']!r}; import the module that defines it")
        if not issubclass(target, cls):
            raise ValueError(f"{data['type']} is not a {cls.__name__}")
        hints = typing.get_type_hints(target)
        kwargs = {}
        for f in dataclasses.fields(target):
            if f.name in data:
                value = _decode(data[f.name])
                if typing.get_origin(hints.get(f.name)) is tuple and isinstance(value, list):
                    value = tuple(value)
                kwargs[f.name] = value
        return target(**kwargs)  # type: ignore[return-value]

    def save(self, path: str | Path) -> Path:
        """Write the result as JSON, atomically."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        """Read a result written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def __eq__(self, other: object) -> bool:
        """Equal when every field but ``meta`` is equal: provenance (time, wall time) is not the result."""
        if type(other) is not type(self):
            return NotImplemented
        return _without_meta(self.to_dict()) == _without_meta(other.to_dict())  # type: ignore[union-attr]

    __hash__ = None  # type: ignore[assignment]

    # -- display ------------------------------------------------------------------------------
    def plot(self, ax: Any = None) -> Any:
        """Draw the result on ``ax`` (a new figure if None) and return the Axes."""
        raise NotImplementedError(f"{type(self).__name__} has no plot")

    def summary(self) -> dict[str, Any]:
        """The scalar fields, for display: name -> value."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "meta" and _is_scalar(getattr(self, f.name))}

    def __repr__(self) -> str:
        parts = [f"{f.name}={_short(getattr(self, f.name))}" for f in dataclasses.fields(self)
                 if f.name != "meta"]
        return f"{type(self).__name__}({', '.join(parts)})"

    # -- the HTML view (Jupyter) --------------------------------------------------------------
    def _html_sections(self) -> list[HtmlTable]:
        """The tables of the HTML view: by default the scalar fields, each value with its standard
        error where the result has one (``x`` with ``x_stderr``; ``estimate`` or ``value`` with
        ``stderr``).  Subclasses override it to show the few numbers that matter."""
        scalars = self.summary()
        paired = _stderr_pairs(scalars)
        rows = [(name, value_with_error(value, scalars[paired[name]]) if name in paired else _plain(value))
                for name, value in scalars.items() if name not in paired.values() and value is not None]
        rows += [(name, _compact(value)) for name, value in self._small_arrays().items()]
        return [HtmlTable("", None, rows)] if rows else []

    def _small_arrays(self) -> dict[str, np.ndarray]:
        """1-D arrays of at most 10 entries (eigenvalues, per-layer numbers): shown in full."""
        return {f.name: v for f in dataclasses.fields(self)
                if isinstance(v := getattr(self, f.name), np.ndarray) and v.ndim == 1 and 0 < v.size <= 10}

    def _html_notes(self) -> list[str]:
        """Sentences shown in a highlighted box above the tables (warnings); none by default."""
        return []

    def _repr_html_(self) -> str:
        """A compact view: the key numbers, the figure at a readable size, the rest folded away.

        Arrays and tables of data are never dumped (shapes only), so the view stays small.
        """
        title = html.escape(type(self).__name__)
        doc = type(self).__doc__ or ""
        first = "" if doc.startswith(f"{type(self).__name__}(") else _first_sentence(doc)  # not the dataclass's own
        subtitle = f' <span style="font-weight:normal;color:#555">{html.escape(first)}</span>' if first else ""
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self._html_notes())
        notes_html = (f'<ul style="{_NOTE_STYLE}">{notes}</ul>' if notes else "")
        tables = "".join(t.html() for t in self._html_sections())
        figure = self._html_figure()
        body = (f'<div style="display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start">'
                f'<div style="flex:0 1 auto;min-width:16em">{tables}</div>{figure}</div>')
        return (f'<div class="theorylab-result" style="{_BOX_STYLE}"><div style="font-weight:600;margin-bottom:6px">'
                f"{title}{subtitle}</div>{notes_html}{body}{self._html_details()}</div>")

    def _html_figure(self) -> str:
        """The result's own plot as an embedded PNG of its natural size (none if it has no plot)."""
        if type(self).plot is Result.plot:
            return ""
        import matplotlib.pyplot as plt

        ax = self.plot()
        buf = io.BytesIO()
        dpi = 144  # sharp on high-density screens; shown at 96 CSS pixels per inch
        ax.figure.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(ax.figure)
        width = _png_width(buf.getvalue()) * 96 // dpi
        img = base64.b64encode(buf.getvalue()).decode()
        return (f'<img src="data:image/png;base64,{img}" width="{width}" alt="{html.escape(type(self).__name__)} plot" '
                f'style="flex:0 0 auto;width:{width}px;max-width:100%;height:auto;margin:0"/>')

    def _html_details(self) -> str:
        """Every other field (arrays and tables by shape only) and the provenance, folded."""
        shown = {k for k, v in self.summary().items() if v is not None} | set(self._small_arrays())
        rows = [(f.name, _short(getattr(self, f.name))) for f in dataclasses.fields(self)
                if f.name not in shown and f.name != "meta"]
        keys = ("theorylab_version", "git_commit", "seed", "dtype", "device", "wall_time_s", "num_matvecs")
        rows += [(f"meta.{k}", _short(self.meta[k])) for k in keys if k in self.meta]
        if not rows:
            return ""
        return (f'<details style="margin-top:6px"><summary style="cursor:pointer;color:#555">all fields and '
                f'provenance</summary>{HtmlTable("", None, rows, wrap=True).html()}</details>')


@dataclass(frozen=True)
class HtmlTable:
    """One table of a Result's HTML view: a caption, optional column headers, rows of cells (text)."""

    caption: str
    header: tuple[str, ...] | None
    rows: list[tuple[str, ...]]
    #: let long values wrap (the folded details) instead of keeping each on one line
    wrap: bool = False

    def html(self) -> str:
        caption = (f'<div style="font-weight:600;margin:6px 0 2px">{html.escape(self.caption)}</div>'
                   if self.caption else "")
        head = ("<tr>" + "".join(f'<th style="{_CELL_STYLE};border-bottom:1px solid #999">{html.escape(h)}</th>'
                                 for h in self.header) + "</tr>") if self.header else ""
        wrap = ";white-space:normal;overflow-wrap:anywhere" if self.wrap else ""
        body = "".join("<tr>" + "".join(
            f'<td style="{_CELL_STYLE}{";font-weight:600" if i == 0 else wrap}">{html.escape(str(c))}</td>'
            for i, c in enumerate(row)) + "</tr>" for row in self.rows)
        return f'{caption}<table style="{_TABLE_STYLE}">{head}{body}</table>'


# inline styles, so that the view reads the same in Jupyter Notebook, JupyterLab (whose stylesheet
# centres tables with a fixed layout) and VS Code
_BOX_STYLE = "font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:13px;line-height:1.35;max-width:72em"
_TABLE_STYLE = "border-collapse:collapse;table-layout:auto;margin:0;width:auto;font-size:13px"
_CELL_STYLE = "text-align:left;padding:2px 14px 2px 0;border:none;white-space:nowrap;vertical-align:top"
_NOTE_STYLE = "background:#fff4e5;border-left:4px solid #e8a33d;margin:4px 0 8px;padding:6px 10px 6px 26px"


def _stderr_pairs(scalars: dict[str, Any]) -> dict[str, str]:
    """``{value field: its standard-error field}`` among scalar fields (``x``/``x_stderr``, and
    ``estimate`` or ``value`` with ``stderr``)."""
    pairs = {name: f"{name}_stderr" for name in scalars if f"{name}_stderr" in scalars}
    if "stderr" in scalars:
        owner = next((n for n in ("estimate", "value") if n in scalars), None)
        if owner is not None:
            pairs[owner] = "stderr"
    return pairs


def value_with_error(value: Any, error: Any) -> str:
    """``value ± error`` with the value rounded to the error's second significant digit."""
    try:
        v, e = float(value), float(error)
    except (TypeError, ValueError):
        return _short(value)
    if e == 0:  # a deterministic measurement
        return f"{v:.6g}"
    if not (math.isfinite(v) and math.isfinite(e)) or e < 0:
        return f"{v:.6g} ± {e:.2g}"
    decimals = 1 - math.floor(math.log10(e))
    if abs(v) >= 1e7 or abs(v) < e * 1e-3 or decimals > 8:
        return f"{v:.4g} ± {e:.2g}"
    return f"{round(v, decimals):.{max(decimals, 0)}f} ± {round(e, decimals):.{max(decimals, 0)}f}"


def _plain(value: Any) -> str:
    """A scalar for display: strings without quotes, floats to 6 significant digits."""
    return value if isinstance(value, str) else _short(value)


def _first_sentence(doc: str, limit: int = 110) -> str:
    """The first sentence of a docstring, without reStructuredText backquotes, at most ``limit`` characters."""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split()).replace("``", "").replace(":func:", "")
    end = paragraph.find(". ")
    sentence = paragraph if end < 0 else paragraph[: end + 1]
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rsplit(" ", 1)[0] + " …"


def _compact(values: np.ndarray) -> str:
    """A short array in full, numbers to 4 significant digits."""
    if values.dtype.kind in "fc":
        return "[" + ", ".join(f"{v:.4g}" for v in values.tolist()) + "]"
    return "[" + ", ".join(str(v) for v in values.tolist()) + "]"


def _png_width(png: bytes) -> int:
    """The pixel width in a PNG's header."""
    return int.from_bytes(png[16:20], "big")


def _import_library() -> None:
    """Import every module of theorylab that can define a Result (its classes register on import)."""
    import importlib
    import pkgutil

    import theorylab

    for module in pkgutil.walk_packages(theorylab.__path__, "theorylab."):
        if not module.name.startswith(("theorylab.cli", "theorylab.analyses")):
            importlib.import_module(module.name)


def _without_meta(encoded: Any) -> Any:
    """An encoded Result with the ``meta`` of it and of every nested Result removed."""
    if isinstance(encoded, dict):
        is_result = "type" in encoded and encoded.get("type") in _REGISTRY
        return {k: _without_meta(v) for k, v in encoded.items() if not (is_result and k == "meta")}
    if isinstance(encoded, list):
        return [_without_meta(v) for v in encoded]
    return encoded


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool, np.integer, np.floating)) or value is None


def _short(value: Any) -> str:
    """A short text of a field: arrays, long lists and dicts by their shape, never their contents."""
    if isinstance(value, np.ndarray):
        if value.size <= 6:
            return np.array2string(value, precision=4, separator=", ")
        return f"array(shape={value.shape}, dtype={value.dtype})"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if isinstance(value, Result):
        return f"{type(value).__name__}(...)"
    if isinstance(value, (list, tuple)) and len(value) > 6:
        return f"{type(value).__name__}(len={len(value)})"
    if isinstance(value, dict):
        shown = ", ".join(f"{k!r}: {_short(v)}" for k, v in list(value.items())[:6])
        return "{" + shown + (", ..." if len(value) > 6 else "") + "}"
    return repr(value)


def _encode(value: Any) -> Any:
    """Encode a value as JSON-safe data (arrays, tensors, non-finite floats, nested Results)."""
    if isinstance(value, Result):
        return value.to_dict()
    if type(value).__module__ == "torch" and hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return {"__ndarray__": _encode(value.tolist()), "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"cannot serialise a {type(value).__name__} in a Result")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            data = _decode(value["__ndarray__"])
            return np.asarray(data, dtype=value["dtype"]).reshape(value["shape"])
        if "__float__" in value:
            return float(value["__float__"])
        if "type" in value and value["type"] in _REGISTRY:
            return Result.from_dict(value)
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value
