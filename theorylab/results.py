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

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td><b>{html.escape(f.name)}</b></td><td>{html.escape(_short(getattr(self, f.name)))}</td></tr>"
                       for f in dataclasses.fields(self) if f.name != "meta")
        table = f"<table><caption>{html.escape(type(self).__name__)}</caption>{rows}</table>"
        if type(self).plot is Result.plot:
            return table
        import matplotlib.pyplot as plt

        ax = self.plot()
        buf = io.BytesIO()
        ax.figure.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        plt.close(ax.figure)
        img = base64.b64encode(buf.getvalue()).decode()
        return f'<div style="display:flex;gap:1em">{table}<img src="data:image/png;base64,{img}"/></div>'


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
    if isinstance(value, dict) and len(value) > 6:
        return f"dict(keys={list(value)[:6]}...)"
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
