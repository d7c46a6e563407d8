"""What an analyzer is: one declaration that validates the shared options, leaves no trace and fills ``meta``.

An analyzer is a public function of a model (and, as it needs them, a loss, data or inputs) that
measures something.  Declaring it with :func:`analyzer`

* validates the options every analyzer shares, once, with the same messages everywhere:
  ``params`` (:func:`theorylab._params.select_parameters`), ``mode`` ("eval", "train", "keep"),
  ``dtype`` (a floating dtype or None), ``device`` (one that exists here), ``seed`` (an integer
  >= 0), ``progress`` (True, False or None), ``output`` (a function of the model output),
  ``loss_fn`` (a callable) and ``process_group`` (needs ``torch.distributed`` initialised; the data is
  sharded over its ranks and every rank gets the numbers of all the data);
* runs the analyzer inside :func:`theorylab._state.preserved`, so the model leaves it exactly as it
  came in (modes, buffers, ``.grad``, ``requires_grad``, hooks, global RNGs), whatever happens;
* fills the result's ``meta`` uniformly: version, commit, the options above (resolved), the
  parameters measured (a tied parameter under all its names) and the wall time, keeping what the
  analyzer itself recorded (products used, ...);
* registers it in :data:`ANALYZERS`, over which one contract test runs (no side effects,
  determinism given a seed, ``to_dict()`` round trip, float64 on CPU).
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from theorylab._params import describe, parameter_aliases, select_parameters
from theorylab._state import check_mode, preserved
from theorylab.functional import check_device, check_dtype
from theorylab.provenance import Stopwatch, make_meta
from theorylab.results import Result

F = TypeVar("F", bound=Callable[..., Any])

#: options shared by analyzers, validated by the declaration
SHARED_OPTIONS: tuple[str, ...] = ("params", "mode", "dtype", "device", "seed", "progress", "output", "loss_fn",
                                   "process_group")


@dataclass(frozen=True)
class AnalyzerSpec:
    """A registered analyzer: its function and the shared options it takes."""

    name: str
    function: Callable[..., Any]
    options: tuple[str, ...]
    returns: str


ANALYZERS: dict[str, AnalyzerSpec] = {}


def _check_seed(seed: Any) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")


def validate_options(arguments: dict[str, Any]) -> None:
    """Check the shared options present in ``arguments`` (a clear ValueError for the first bad one)."""
    model = arguments.get("model")
    if "model" in arguments and not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if "mode" in arguments:
        check_mode(arguments["mode"])
    if "dtype" in arguments:
        check_dtype(arguments["dtype"])
    if "device" in arguments:
        check_device(arguments["device"])
    if "seed" in arguments:
        _check_seed(arguments["seed"])
    if arguments.get("progress") is not None and not isinstance(arguments["progress"], bool):
        raise ValueError(f"progress must be True, False or None, got {arguments['progress']!r}")
    if arguments.get("output") is not None and not callable(arguments["output"]):
        raise ValueError(f"output must be a function of the model output, got {type(arguments['output']).__name__}")
    if "loss_fn" in arguments and not callable(arguments["loss_fn"]):
        raise ValueError(f"loss_fn must be a function (outputs, targets) -> scalar, "
                         f"got {type(arguments['loss_fn']).__name__}")
    if arguments.get("process_group") is not None:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError("process_group is given but torch.distributed is not initialised: call "
                             "torch.distributed.init_process_group first (or leave process_group=None)")
    if "params" in arguments and model is not None:
        select_parameters(model, arguments["params"])


def _common_meta(arguments: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    model = arguments.get("model")
    for key in ("seed", "mode"):
        if key in arguments:
            meta[key] = arguments[key]
    if model is not None:
        first = next(model.parameters(), None)
        dtype = arguments.get("dtype") or (first.dtype if first is not None else None)
        device = arguments.get("device") or (first.device if first is not None else None)
        if dtype is not None:
            meta["dtype"] = dtype
        if device is not None:
            meta["device"] = device
        if "params" in arguments:
            aliases = parameter_aliases(model)
            names = list(select_parameters(model, arguments["params"]))
            meta["params"] = [describe(n, aliases) for n in names]
            meta["num_parameters"] = int(sum(p.numel() for n, p in model.named_parameters() if n in names))
    return meta


def _stamped(value: Any, meta: dict[str, Any]) -> Any:
    if isinstance(value, Result):
        return dataclasses.replace(value, meta=make_meta(**{**meta, **value.meta}))
    if hasattr(value, "meta") and isinstance(value.meta, dict):  # lazy operators
        value.meta = make_meta(**{**meta, **value.meta})
    return value


def analyzer(fn: F) -> F:
    """Declare ``fn`` an analyzer (see the module docstring); returns the wrapped function."""
    signature = inspect.signature(fn)
    options = tuple(o for o in SHARED_OPTIONS if o in signature.parameters)

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        validate_options(arguments)
        model = arguments.get("model")
        with Stopwatch() as watch:
            if isinstance(model, nn.Module):
                with preserved(model, mode="keep"), torch.no_grad():
                    value = fn(*bound.args, **bound.kwargs)
            else:
                value = fn(*bound.args, **bound.kwargs)
        return _stamped(value, {**_common_meta(arguments), "wall_time_s": round(watch.seconds, 4)})

    returns = signature.return_annotation
    ANALYZERS[fn.__name__] = AnalyzerSpec(fn.__name__, run, options,
                                          returns if isinstance(returns, str) else getattr(returns, "__name__", ""))
    return run  # type: ignore[return-value]
