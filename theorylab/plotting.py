"""One figure style for the whole project, and ``save_figure`` with a provenance sidecar.

Figures are made through pyplot, so Jupyter shows them and ``plt.show()`` finds them, but the
house style never changes matplotlib's global state: the figure (and with it the backend, resolved
on the first figure of a session, and interactive mode) is created with the user's settings, and
:data:`STYLE` is applied only while the axes are built (a style read when an artist is made, such
as tick and label font sizes, grid and spines).  Colours, backends and rcParams the user set stay
as they were, for theorylab's figures and for the user's own ``plt.plot`` after them.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from theorylab._io import atomic_write_bytes, json_bytes
from theorylab.provenance import make_meta

STYLE: dict[str, Any] = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "lines.linewidth": 1.5,
}

#: colour of measured data and of the theory prediction drawn over it
MEASURED = "C0"
PREDICTED = "C3"


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 4.0, height: float = 3.0):
    """A figure with the house style and ``nrows x ncols`` axes (squeezed), registered with pyplot.

    The figure is created outside any style context (a ``plt.rc_context`` around the first figure of
    a Jupyter session would resolve the inline backend inside it and undo its interactive mode on
    exit, so no later figure would be shown); only the axes are built under :data:`STYLE`.
    """
    fig = plt.figure(figsize=(width * ncols, height * nrows), dpi=STYLE["figure.dpi"], layout="constrained")
    with plt.rc_context(STYLE):
        axes = fig.subplots(nrows, ncols, squeeze=True)
    return fig, axes


def axes_or_new(ax: Any = None, **kwargs: Any):
    """Return ``ax`` or the axes of a new house-style figure (for ``Result.plot(ax=None)``)."""
    if ax is not None:
        return ax
    _, ax = new_figure(**kwargs)
    return ax


def save_figure(fig: Any, path: str | Path, *, provenance: dict[str, Any] | None = None,
                formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Save ``fig`` as ``path.png`` and ``path.pdf`` (atomically) with ``path.json`` provenance.

    ``path`` is given without extension (dots in the name are kept: ``fig.v2`` -> ``fig.v2.png``).  The sidecar records the library version, commit and
    whatever ``provenance`` adds (command, claim id, scale, seed).  Returns the image files.
    """
    path = Path(path)
    files = render_figure(fig, path.name, provenance=provenance, formats=formats)
    written = [atomic_write_bytes(path.parent / name, data) for name, data in files.items()]
    return [p for p in written if p.suffix != ".json"]


def render_figure(fig: Any, name: str, *, provenance: dict[str, Any] | None = None,
                  formats: tuple[str, ...] = ("png", "pdf")) -> dict[str, bytes]:
    """The files :func:`save_figure` writes, in memory: ``{"name.png": bytes, ..., "name.json": bytes}``.

    Identical figures give identical bytes (no creation date in the PDF, no software tag in the PNG).
    """
    files = {}
    for fmt in formats:
        buf = io.BytesIO()
        # a fixed creation date keeps the PDF byte-identical between identical runs
        metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None} if fmt == "png" else None
        fig.savefig(buf, format=fmt, bbox_inches="tight", metadata=metadata)
        files[f"{name}.{fmt}"] = buf.getvalue()
    files[f"{name}.json"] = json_bytes(make_meta(**(provenance or {})))
    return files


def close(fig: Any) -> None:
    plt.close(fig)
