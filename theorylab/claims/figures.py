"""Figure conventions shared by every claim.

One colour for measurements (:data:`theorylab.plotting.MEASURED`, in shades when a figure shows
several measured series) and one for predictions (:data:`theorylab.plotting.PREDICTED`, several
predictions told apart by line style or by panel); negative controls in grey; legends outside the
data; log axes with readable decade ticks; error bars or bands wherever there are seeds; symbols
in mathtext.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from theorylab.plotting import MEASURED, PREDICTED

CONTROL = "0.55"
__all__ = ["CONTROL", "MEASURED", "PREDICTED", "band", "figure_legend", "legend_outside", "log_axis",
           "measured_shades", "prediction", "prediction_level"]


def measured_shades(n: int) -> list[Any]:
    """``n`` shades of the measurement colour, light to dark (for several measured series)."""
    from matplotlib import colormaps

    if n <= 1:
        return [MEASURED]
    return [colormaps["Blues"](v) for v in np.linspace(0.45, 0.95, n)]


def prediction(ax: Any, x: Any, y: Any, *, label: str | None = None, ls: str = "--", **kwargs: Any) -> Any:
    """Draw a prediction: the prediction colour, a dashed line by default."""
    return ax.plot(x, y, color=PREDICTED, ls=ls, lw=kwargs.pop("lw", 1.5), label=label, **kwargs)


def prediction_level(ax: Any, *, x: float | None = None, y: float | None = None, label: str | None = None,
                     ls: str = "--") -> Any:
    """A predicted location (vertical line at ``x``) or level (horizontal line at ``y``)."""
    if (x is None) == (y is None):
        raise ValueError("give exactly one of x and y")
    if x is not None:
        return ax.axvline(x, color=PREDICTED, ls=ls, lw=1.2, label=label)
    return ax.axhline(y, color=PREDICTED, ls=ls, lw=1.2, label=label)


def band(ax: Any, x: Sequence[float], per_seed: Any, *, color: Any = MEASURED, label: str | None = None,
         marker: str = "o", errorbars: bool = False) -> Any:
    """The mean over seeds (rows of ``per_seed``) with a band (or bars) of +-2 standard errors."""
    values = np.asarray(per_seed, dtype=np.float64)
    values = values[None, :] if values.ndim == 1 else values
    mean = np.nanmean(values, axis=0)
    count = np.sum(np.isfinite(values), axis=0)
    se = np.where(count > 1, np.nanstd(values, axis=0, ddof=1) / np.sqrt(np.maximum(count, 1)), 0.0) \
        if values.shape[0] > 1 else np.zeros_like(mean)
    if errorbars:
        return ax.errorbar(x, mean, yerr=2 * se, fmt=marker + "-", ms=3, capsize=2, color=color, label=label)
    line = ax.plot(x, mean, marker=marker, ms=3, color=color, label=label)
    if values.shape[0] > 1:
        ax.fill_between(x, mean - 2 * se, mean + 2 * se, color=color, alpha=0.2, lw=0)
    return line


def legend_outside(ax: Any, *, where: str = "below", **kwargs: Any) -> Any:
    """A legend beside (``"right"``) or below (``"below"``, under the axis label) the axes, never over the data."""
    if where == "right":
        return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs)
    if where == "below":
        return ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), borderaxespad=0.0,
                         ncol=kwargs.pop("ncol", 2), **kwargs)
    raise ValueError(f"where must be 'right' or 'below', got {where!r}")


def figure_legend(fig: Any, axes: Sequence[Any], **kwargs: Any) -> Any:
    """One legend below all panels of ``fig``, with each label once."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    return fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                      ncol=kwargs.pop("ncol", min(4, len(handles))), **kwargs)


def log_axis(ax: Any, axis: str = "x", *, ticks: Sequence[float] | None = None) -> None:
    """A log axis with readable ticks: the given ``ticks`` written plainly, else labelled decades."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogFormatterMathtext, LogLocator, NullFormatter

    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    if ticks is not None:
        target.set_major_locator(FixedLocator(list(ticks)))
        target.set_major_formatter(plain)
    else:
        ax.autoscale_view()
        low, high = ax.get_xlim() if axis == "x" else ax.get_ylim()
        if 0 < low < high and np.log10(high / low) < 2:  # under two decades: label 1, 2, 5 of each decade
            target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            target.set_major_formatter(plain)
        else:
            target.set_major_locator(LogLocator(base=10))
            target.set_major_formatter(LogFormatterMathtext(base=10))
    target.set_minor_formatter(NullFormatter())
