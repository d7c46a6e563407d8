"""The empirical neural tangent kernel of a finite network, computed exactly and in blocks.

For a network ``f(x; theta)`` with ``O`` outputs and Jacobian ``J(x) = df(x)/dtheta`` (``O x P``),
the empirical NTK is (Jacot, Gabriel & Hongler 2018, Eq. 3)

    Theta(x, x')_{ij} = sum_p J(x)_{ip} J(x')_{jp}          (an O x O block per pair of inputs).

Two exact methods (Novak, Sohl-Dickstein & Schoenholz 2022, "Fast finite width neural tangent
kernel"), cross-checked in the tests:

* ``"jacobian"``: per-example Jacobians by ``torch.func.vmap(jacrev)``, then one contraction;
  cost ``N O`` backward passes + ``N^2 O^2 P`` flops.  The fast choice for MLPs on CPU.
* ``"ntk_vp"``: NTK-vector products ``J(x) (J(x')^T v)`` (a VJP followed by a JVP) for every
  basis vector ``v``; cost ``N^2 O`` forward-mode passes, never holding a per-example Jacobian of
  the second input block.

Inputs are split into blocks of ``block_size`` examples, so at most two Jacobian blocks
(``2 * block_size * O * P`` numbers) are alive at once, whatever the number of inputs.

The parameters enter through ``torch.func.functional_call``, so a module applied twice (weight
sharing) contributes both uses to the Jacobian -- hook-based tools that record one activation per
module get this wrong without a warning.

Output reduction (named, because libraries differ): ``reduce="none"`` returns the full
``(N1, N2, O, O)`` kernel; ``"sum"`` the trace over outputs ``sum_i Theta_ii`` (the PyTorch
tutorial convention); ``"mean"`` the trace divided by ``O`` (neural-tangents' convention, and the
per-output kernel of the infinite-width limit, where ``Theta_ij = delta_ij Theta``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from theorylab._params import ParamSpec, select_parameters
from theorylab._state import MODES, Mode, preserved
from theorylab.analyzer import analyzer
from theorylab.functional import ModelFunction

Reduce = Literal["mean", "sum", "none"]
Method = Literal["jacobian", "ntk_vp"]
REDUCES: tuple[str, ...] = ("mean", "sum", "none")
METHODS: tuple[str, ...] = ("jacobian", "ntk_vp")

ParamDict = dict[str, Tensor]


@analyzer
def empirical_ntk(model: nn.Module, x1: Tensor, x2: Tensor | None = None, *, params: ParamSpec = None,
                  reduce: Reduce = "mean", method: Method = "jacobian", block_size: int = 64,
                  mode: Mode = "eval", dtype: torch.dtype | None = None, process_group: Any = None) -> Tensor:
    """The exact empirical NTK between the inputs ``x1`` (N1, ...) and ``x2`` (N2, ...).

    ``x2=None`` means ``x2 = x1`` (only the upper block triangle is computed).  ``params`` selects
    the parameters the Jacobian is taken with respect to (see :func:`theorylab._params.select_parameters`;
    the others stay fixed).  Returns a tensor of shape ``(N1, N2)`` for ``reduce="mean" | "sum"``
    and ``(N1, N2, O, O)`` for ``"none"``, in ``dtype`` (default: the parameters' dtype), on the
    model's device.  The model is evaluated in ``mode`` (default eval: BatchNorm uses running
    statistics, so examples stay independent) and left exactly as it was.

    With a ``torch.distributed`` ``process_group``, ``x1`` (and ``x2``) are this rank's shards of the
    inputs: the shards of ``x2`` are gathered, each rank computes the rows of its own ``x1`` shard,
    and the row blocks are gathered, so every rank returns the full kernel over the inputs of all
    ranks in rank order (the same numbers as one process over the concatenated inputs).
    """
    if reduce not in REDUCES:
        raise ValueError(f"reduce must be one of {REDUCES}, got {reduce!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    x1 = _check_inputs("x1", x1)
    symmetric = x2 is None
    x2 = x1 if x2 is None else _check_inputs("x2", x2)
    if x1.shape[1:] != x2.shape[1:]:
        raise ValueError(f"x1 and x2 must have the same per-example shape, got {tuple(x1.shape[1:])} "
                         f"and {tuple(x2.shape[1:])}")
    selected = select_parameters(model, params)
    with preserved(model, mode=mode), torch.no_grad():
        ModelFunction(model, variables=False, mode=mode).check_examples_independent()
        fn, theta = _functional(model, selected, dtype)
        ref = next(iter(theta.values()))
        x1 = x1.to(device=ref.device, dtype=ref.dtype if x1.is_floating_point() else x1.dtype)
        x2 = x2.to(device=ref.device, dtype=ref.dtype if x2.is_floating_point() else x2.dtype)
        if process_group is None:
            return _blocked(method, fn, theta, x1, x2, reduce, block_size, symmetric)
        rows = _blocked(method, fn, theta, x1, _all_gather_rows(x2, process_group), reduce, block_size, False)
        return _all_gather_rows(rows, process_group)


def _all_gather_rows(t: Tensor, group: Any) -> Tensor:
    """Concatenate along dim 0 the tensors of all ranks (their first dimensions may differ)."""
    import torch.distributed as dist

    world = dist.get_world_size(group)
    sizes = [torch.zeros(1, dtype=torch.long, device=t.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([t.shape[0]], device=t.device), group=group)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest,) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: t.shape[0]] = t
    pieces = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(pieces, padded.contiguous(), group=group)
    return torch.cat([piece[: int(n.item())] for piece, n in zip(pieces, sizes)])


def _check_inputs(name: str, x: Tensor) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a tensor of inputs, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must have a leading batch dimension with at least one example, "
                         f"got shape {tuple(x.shape)}")
    return x


def _functional(model: nn.Module, selected: dict[str, nn.Parameter], dtype: torch.dtype | None
                ) -> tuple[Callable[[ParamDict, Tensor], Tensor], ParamDict]:
    """``fn(theta, x_batch) -> (B, O)`` with the selected parameters ``theta`` as the only variables."""
    def cast(t: Tensor) -> Tensor:
        t = t.detach()
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t

    theta = {name: cast(p) for name, p in selected.items()}
    fixed = {name: cast(p) for name, p in model.named_parameters() if name not in theta}
    fixed.update({name: cast(b) for name, b in model.named_buffers()})

    def fn(params: ParamDict, x: Tensor) -> Tensor:
        out = functional_call(model, {**fixed, **params}, (x,), tie_weights=True)
        return out.reshape(x.shape[0], -1)

    return fn, theta


def _jacobian(fn: Callable[[ParamDict, Tensor], Tensor], theta: ParamDict, x: Tensor) -> list[Tensor]:
    """Per-example Jacobians, one ``(B, O, P_k)`` tensor per parameter (never concatenated: no copy)."""
    def single(params: ParamDict, xi: Tensor) -> Tensor:
        return fn(params, xi.unsqueeze(0)).squeeze(0)

    jac = vmap(jacrev(single), in_dims=(None, 0))(theta, x)
    return [j.flatten(2) for j in jac.values()]


def _contract(ja: list[Tensor], jb: list[Tensor], reduce: str) -> Tensor:
    """``sum_p ja[a, i, p] jb[b, j, p]`` as (A, B, O, O), or its trace over outputs (A, B)."""
    n_a, n_out, _ = ja[0].shape
    n_b = jb[0].shape[0]
    if reduce == "none":  # per parameter one (A O, P_k) @ (P_k, B O) product
        k = sum(a.reshape(n_a * n_out, -1) @ b.reshape(n_b * n_out, -1).T for a, b in zip(ja, jb))
        return k.view(n_a, n_out, n_b, n_out).permute(0, 2, 1, 3)
    # per output i: (A, P_k) @ (P_k, B), batched over outputs, then summed
    k = sum(torch.bmm(a.transpose(0, 1), b.permute(1, 2, 0)) for a, b in zip(ja, jb)).sum(0)
    return k / n_out if reduce == "mean" else k


def _jacobian_tile(fn, theta, xa, ja, xb, reduce):
    jb = ja if xb is xa else _jacobian(fn, theta, xb)
    return _contract(ja, jb, reduce)


def _ntk_vp_tile(fn, theta, xa, xb, reduce):
    """The (A, B) tile by NTK-vector products: column ``v`` is ``J(xb) J(xa)^T v``, ``v`` a basis vector."""
    out, vjp_fn = vjp(lambda p: fn(p, xa), theta)
    n_a, n_out = out.shape
    basis = torch.eye(n_a * n_out, dtype=out.dtype, device=out.device).view(-1, n_a, n_out)

    def column(v: Tensor) -> Tensor:
        (tangent,) = vjp_fn(v)
        return jvp(lambda p: fn(p, xb), (theta,), (tangent,))[1]

    k = vmap(column)(basis).view(n_a, n_out, xb.shape[0], n_out).permute(0, 2, 1, 3)
    if reduce == "none":
        return k
    trace = k.diagonal(dim1=2, dim2=3).sum(-1)
    return trace / n_out if reduce == "mean" else trace


def _blocked(method, fn, theta, x1, x2, reduce, block_size, symmetric) -> Tensor:
    """Fill the kernel tile by tile; for ``x2 = x1`` compute the upper tiles and mirror them."""
    n1, n2 = x1.shape[0], x2.shape[0]
    out: Tensor | None = None
    for s1 in range(0, n1, block_size):
        xa = x1[s1:s1 + block_size]
        ja = _jacobian(fn, theta, xa) if method == "jacobian" else None
        for s2 in range(s1 if symmetric else 0, n2, block_size):
            xb = xa if symmetric and s2 == s1 else x2[s2:s2 + block_size]
            if method == "jacobian":
                tile = _jacobian_tile(fn, theta, xa, ja, xb, reduce)
            else:
                tile = _ntk_vp_tile(fn, theta, xa, xb, reduce)
            if out is None:
                out = tile.new_empty((n1, n2) + tuple(tile.shape[2:]))
            out[s1:s1 + len(xa), s2:s2 + len(xb)] = tile
            if symmetric and s2 > s1:
                mirrored = tile.transpose(0, 1)
                out[s2:s2 + len(xb), s1:s1 + len(xa)] = mirrored.transpose(2, 3) if reduce == "none" else mirrored
        del ja
    assert out is not None
    return out
