"""Choosing which parameters an analyzer looks at (per-layer and per-block spectra in one call).

A parameter shared by several modules (tied embeddings: GPT-2's ``lm_head.weight`` is
``transformer.wte.weight``) is one parameter with several names.  PyTorch lists it once, under
its first name; here every name selects it, and :func:`parameter_aliases` gives all its names,
so results can report a tied parameter by every name it has.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from torch import nn

ParamSpec = str | nn.Module | Sequence[str | nn.Module] | None


def parameter_aliases(model: nn.Module) -> dict[str, list[str]]:
    """``{name: [every name of that parameter]}`` for each parameter (first name first)."""
    aliases: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(p), []).append(name)
    return {names[0]: names for names in aliases.values()}


def describe(name: str, aliases: dict[str, list[str]]) -> str:
    """``name``, or ``"a (tied: b, c)"`` for a parameter with other names."""
    others = aliases.get(name, [name])[1:]
    return f"{name} (tied: {', '.join(others)})" if others else name


def select_parameters(model: nn.Module, params: ParamSpec = None) -> dict[str, nn.Parameter]:
    """The named parameters of ``model`` chosen by ``params``, in the model's order.

    ``params`` is None (every parameter with ``requires_grad``), or one or a list of:
    a parameter name (``"net.0.weight"``), a module name selecting all its parameters
    (``"net.0"``), a glob pattern (``"net.*.weight"``), or a submodule of ``model``.  Any name of
    a tied parameter selects it; it is returned once, under its first name.
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
    every_name = {alias: first for first, names in parameter_aliases(model).items() for alias in names}
    wanted: set[str] = set()
    for item in items:
        if isinstance(item, nn.Module):
            hits = {ids[id(p)] for p in item.parameters() if id(p) in ids}
        elif isinstance(item, str):
            hits = {first for alias, first in every_name.items()
                    if alias == item or alias.startswith(item + ".") or fnmatch.fnmatchcase(alias, item)}
        else:
            raise ValueError(f"params items must be names, glob patterns or modules, got {type(item).__name__}")
        if not hits:
            raise ValueError(f"params={item!r} matched no parameter of the model; "
                             f"parameter names are {list(every_name)}")
        wanted |= hits
    return {n: p for n, p in named.items() if n in wanted}
