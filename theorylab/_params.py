"""Choosing which parameters an analyzer looks at (per-layer and per-block spectra in one call)."""
from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from torch import nn

ParamSpec = str | nn.Module | Sequence[str | nn.Module] | None


def select_parameters(model: nn.Module, params: ParamSpec = None) -> dict[str, nn.Parameter]:
    """The named parameters of ``model`` chosen by ``params``, in the model's order.

    ``params`` is None (every parameter with ``requires_grad``), or one or a list of:
    a parameter name (``"net.0.weight"``), a module name selecting all its parameters
    (``"net.0"``), a glob pattern (``"net.*.weight"``), or a submodule of ``model``.
    Raises ValueError if the selection is empty or an item matches nothing.
    """
    named = dict(model.named_parameters())
    if params is None:
        chosen = {n: p for n, p in named.items() if p.requires_grad}
        if not chosen:
            raise ValueError("the model has no parameters that require grad")
        return chosen
    items = [params] if isinstance(params, (str, nn.Module)) else list(params)
    if not items:
        raise ValueError("params is an empty list: select at least one parameter")
    ids = {id(p): n for n, p in named.items()}
    wanted: set[str] = set()
    for item in items:
        if isinstance(item, nn.Module):
            hits = {ids[id(p)] for p in item.parameters() if id(p) in ids}
        elif isinstance(item, str):
            hits = {n for n in named if n == item or n.startswith(item + ".") or fnmatch.fnmatchcase(n, item)}
        else:
            raise ValueError(f"params items must be names, glob patterns or modules, got {type(item).__name__}")
        if not hits:
            raise ValueError(f"params={item!r} matched no parameter of the model; "
                             f"parameter names are {list(named)}")
        wanted |= hits
    return {n: p for n, p in named.items() if n in wanted}
