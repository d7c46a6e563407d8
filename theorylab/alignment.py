"""Permutation alignment of two networks by weight matching (Ainsworth, Hayase & Srinivasa 2023).

Permuting the hidden units of a layer -- rows of its weight and bias, the matching columns of the
next layer's weight, the entries of a normalisation layer in between -- leaves the function a
network computes unchanged.  Two networks trained from different seeds differ by such a
permutation and more; weight matching ("Git Re-Basin: merging models modulo permutation
symmetries", ICLR 2023, Sec. 3.2 and Algorithm 1) finds the permutations ``pi`` of ``B``'s units
that maximise the inner product of the weights, ``sum_l <W_l^A, P_l W_l^B P_{l-1}^T>``, by
coordinate descent: each permutation in turn (in a random order) is the solution of a linear
assignment problem with the others fixed,

    P_l = argmax_P <P, sum_{w in group l} W^A_(l) (pi_others W^B)_(l)^T>,

``X_(l)`` the tensor with the permuted axis first and the rest flattened; sweeps repeat until no
permutation improves.  A planted permutation is recovered exactly.

Which axes a permutation acts on is a :data:`PermutationSpec`, ``{group: [(tensor name, axis,
repeat), ...]}`` (``repeat > 1`` where a flattened convolution output feeds a linear layer: each
channel owns ``repeat`` consecutive inputs).  :func:`chain_spec` infers it for networks that are a
chain of ``nn.Linear`` / ``nn.Conv2d`` layers with ``nn.BatchNorm*`` / ``nn.LayerNorm`` between them
(MLPs, plain CNNs, ``theorylab.models.MLP`` and ``SmallCNN``), in the order the modules are
registered; networks with skip connections or attention need a spec written for them.  Registration
order is not execution order in general: pass ``data`` to :func:`weight_matching` and the spec is
checked to be a symmetry (a randomly permuted copy must compute the same outputs on that batch).
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import scipy.optimize
import torch
from torch import Tensor, nn

from theorylab.analyzer import analyzer
from theorylab.batches import Batch
from theorylab.functional import ModelFunction
from theorylab.plotting import MEASURED, axes_or_new
from theorylab.results import Result, result_class

PermutationSpec = dict[str, list[tuple[str, int, int]]]
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)


def _dense_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from theorylab.models import ScaledLinear

    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, (nn.Linear, ScaledLinear, nn.Conv2d, *_NORMS))]


def chain_spec(model: nn.Module) -> PermutationSpec:
    """The permutations of a chain of linear/convolution layers with normalisation layers between them.

    Every linear or convolution layer but the last gets a permutation of its outputs (``P0``,
    ``P1``, ...), applied to its weight and bias (axis 0), to the normalisation layers that follow
    (weights, biases, running statistics) and to the next layer's weight along axis 1.  Raises a
    clear error where the model is not such a chain.
    """
    layers = _dense_layers(model)
    prefix = {name: f"{name}." if name else "" for name, _ in layers}
    in_layers = {f"{prefix[name]}{n}" for name, m in layers for n, _ in m.named_parameters(recurse=False)}
    others = [n for n, _ in model.named_parameters() if n not in in_layers]
    if others:
        raise ValueError(f"weight matching infers permutations for chains of Linear/Conv2d/BatchNorm/LayerNorm layers; "
                         f"the parameters {others[:5]} are outside such a chain; pass spec= for this model")
    spec: PermutationSpec = {}
    current: str | None = None
    size = 0
    dense = [(n, m) for n, m in layers if not isinstance(m, _NORMS)]
    if len(dense) < 2:
        raise ValueError("weight matching needs at least two linear or convolution layers (one hidden layer)")
    last = dense[-1][0]
    for name, module in layers:
        p = prefix[name]
        if isinstance(module, _NORMS):
            if current is None:
                raise ValueError(f"normalisation layer {name!r} comes before any linear or convolution layer")
            width = module.normalized_shape if isinstance(module, nn.LayerNorm) else (module.num_features,)
            if tuple(width) != (size,):
                raise ValueError(f"normalisation layer {name!r} acts on {tuple(width)} features, not on the {size} "
                                 "units of the layer before it; pass spec= for this model")
            entries = [f"{p}{t}" for t in ("weight", "bias", "running_mean", "running_var")
                       if getattr(module, t, None) is not None]
            spec[current] += [(t, 0, 1) for t in entries]
            continue
        weight = module.weight
        fan_in = weight.shape[1]
        if current is not None:
            if fan_in % size:
                raise ValueError(f"layer {name!r} has {fan_in} inputs, not a multiple of the {size} units before it; "
                                 "pass spec= for this model")
            spec[current].append((f"{p}weight", 1, fan_in // size))
        if name == last:
            break
        current, size = f"P{len(spec)}", weight.shape[0]
        spec[current] = [(f"{p}weight", 0, 1)] + ([(f"{p}bias", 0, 1)] if module.bias is not None else [])
    return spec


def _tensors(model: nn.Module) -> dict[str, Tensor]:
    named = {n: p.detach() for n, p in model.named_parameters()}
    named.update({n: b.detach() for n, b in model.named_buffers()})
    return named


def _check_spec(spec: Any, tensors: dict[str, Tensor]) -> dict[str, int]:
    """The size of every permutation group; a clear error for an inconsistent spec."""
    if not isinstance(spec, dict) or not spec:
        raise ValueError("spec must be a non-empty dict {group: [(tensor name, axis, repeat), ...]}")
    sizes = {}
    for group, entries in spec.items():
        for name, axis, repeat in entries:
            if name not in tensors:
                raise ValueError(f"spec group {group!r} names {name!r}, which the model does not have")
            length = tensors[name].shape[axis]
            if length % repeat:
                raise ValueError(f"axis {axis} of {name!r} has length {length}, not a multiple of repeat={repeat}")
            if sizes.setdefault(group, length // repeat) != length // repeat:
                raise ValueError(f"spec group {group!r} permutes axes of different sizes ({name!r})")
    return sizes


def _permute_axis(t: Tensor, axis: int, repeat: int, perm: Tensor) -> Tensor:
    index = (perm[:, None] * repeat + torch.arange(repeat)).reshape(-1).to(t.device)
    return t.index_select(axis, index)


def permute_tensors(tensors: dict[str, Tensor], spec: PermutationSpec, perms: dict[str, Tensor],
                    skip: str | None = None) -> dict[str, Tensor]:
    """The tensors with every group's permutation applied (except group ``skip``)."""
    out = dict(tensors)
    for group, entries in spec.items():
        if group == skip:
            continue
        for name, axis, repeat in entries:
            out[name] = _permute_axis(out[name], axis, repeat, perms[group])
    return out


def _objective(a: dict[str, Tensor], b: dict[str, Tensor], spec: PermutationSpec, weights: set[str]) -> float:
    names = {name for entries in spec.values() for name, _, _ in entries} & weights
    return float(sum(torch.sum(a[n] * b[n]) for n in names))


@result_class
class WeightMatching(Result):
    """Permutations of ``other``'s units that align it with ``model`` (``apply`` makes the aligned copy).

    ``permutations[group][i]`` is the unit of ``other`` that goes to position ``i``; ``objective``
    is ``sum <W^A, pi(W^B)>`` after each sweep (the first entry: before any permutation);
    ``spec`` the permutation spec used.
    """

    permutations: dict[str, np.ndarray]
    objective: np.ndarray
    sweeps: int
    converged: bool
    spec: dict[str, list[list[Any]]]

    def apply(self, other: nn.Module) -> nn.Module:
        """A copy of ``other`` with its units permuted (the same function, aligned weights)."""
        spec = {g: [(n, int(a), int(r)) for n, a, r in entries] for g, entries in self.spec.items()}
        perms = {g: torch.as_tensor(p, dtype=torch.long) for g, p in self.permutations.items()}
        aligned = copy.deepcopy(other)
        permuted = permute_tensors(_tensors(aligned), spec, perms)
        state = aligned.state_dict(keep_vars=True)
        with torch.no_grad():
            for name in {n for entries in spec.values() for n, _, _ in entries}:
                state[name].copy_(permuted[name])
        return aligned

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        ax.plot(np.arange(len(self.objective)), self.objective, "o-", color=MEASURED)
        ax.set(xlabel="sweep", ylabel="sum <W_A, pi(W_B)>", title=f"weight matching ({self.sweeps} sweeps)")
        return ax


def check_symmetry(model: nn.Module, spec: PermutationSpec, batch: Batch, *, seed: int = 0,
                   rtol: float = 1e-5) -> None:
    """A clear error unless permuting ``model`` by ``spec`` (at random) leaves its outputs on ``batch`` unchanged."""
    outputs = []
    for network in (model, random_permutation(model, seed=seed, spec=spec)):
        fn = ModelFunction(network, variables=False, mode="eval")
        with torch.no_grad(), fn.evaluating():
            outputs.append(fn.outputs({}, next(fn.batches(batch))))
    before, after = outputs
    error = float((after - before).abs().max())
    if error > rtol * max(1.0, float(before.abs().max())):
        raise ValueError(f"the permutation spec is not a symmetry of the model: permuting its units changes the "
                         f"outputs by up to {error:.3g}; the model is not a plain chain of layers "
                         "(skip connections, reordered modules): pass spec= written for it")


@analyzer
def weight_matching(model: nn.Module, other: nn.Module, *, spec: PermutationSpec | None = None, max_sweeps: int = 100,
                    seed: int = 0, data: Batch | None = None) -> WeightMatching:
    """Permutations of ``other``'s hidden units that maximise its weights' inner product with ``model``'s.

    ``spec``: which tensor axes each permutation acts on (default :func:`chain_spec` of ``model``);
    coordinate descent over the groups in an order drawn from ``seed``, at most ``max_sweeps``
    sweeps.  ``data``: one batch on which the spec is first checked to be a symmetry of ``model``
    (:func:`check_symmetry`).  Neither model is changed; ``result.apply(other)`` returns the
    aligned copy.
    """
    if not isinstance(other, nn.Module):
        raise ValueError(f"other must be a torch.nn.Module, got {type(other).__name__}")
    if isinstance(max_sweeps, bool) or not isinstance(max_sweeps, int) or max_sweeps < 1:
        raise ValueError(f"max_sweeps must be a positive integer, got {max_sweeps!r}")
    spec = chain_spec(model) if spec is None else {g: [tuple(e) for e in entries] for g, entries in spec.items()}
    if data is not None:
        check_symmetry(model, spec, data, seed=seed)
    a = {n: t.to(device="cpu", dtype=torch.float64) if t.is_floating_point() else t.cpu()
         for n, t in _tensors(model).items()}
    b = {n: t.to(device="cpu", dtype=torch.float64) if t.is_floating_point() else t.cpu()
         for n, t in _tensors(other).items()}
    for name in {n for entries in spec.values() for n, _, _ in entries}:
        if name not in b or b[name].shape != a.get(name, b[name]).shape:
            raise ValueError(f"the two models differ in {name!r}: they must have the same architecture")
    sizes = _check_spec(spec, a)
    perms = {g: torch.arange(n) for g, n in sizes.items()}
    rng = np.random.default_rng(seed)
    weights = {n for n, _ in model.named_parameters()}  # buffers are permuted, but not matched
    history = [_objective(a, permute_tensors(b, spec, perms), spec, weights)]
    converged = False
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):
        improved = False
        for group in rng.permutation(list(spec)):
            others = permute_tensors(b, spec, perms, skip=group)
            n = sizes[group]
            gain = torch.zeros(n, n, dtype=torch.float64)
            for name, axis, _ in spec[group]:
                if name not in weights:
                    continue
                wa = a[name].movedim(axis, 0).reshape(n, -1)
                wb = others[name].movedim(axis, 0).reshape(n, -1)
                gain += wa @ wb.T
            rows, columns = scipy.optimize.linear_sum_assignment(gain.numpy(), maximize=True)
            new = torch.as_tensor(columns[np.argsort(rows)], dtype=torch.long)
            before = float(gain[torch.arange(n), perms[group]].sum())
            after = float(gain[torch.arange(n), new].sum())
            if after > before + 1e-12 * max(1.0, abs(before)):
                perms[group] = new
                improved = True
        history.append(_objective(a, permute_tensors(b, spec, perms), spec, weights))
        if not improved:
            converged = True
            break
    return WeightMatching(permutations={g: p.numpy() for g, p in perms.items()}, objective=np.array(history),
                          sweeps=sweeps, converged=converged,
                          spec={g: [[n, int(ax), int(r)] for n, ax, r in entries] for g, entries in spec.items()})


def random_permutation(model: nn.Module, *, seed: int = 0, spec: PermutationSpec | None = None) -> nn.Module:
    """A copy of ``model`` with its hidden units permuted at random (the same function, other weights)."""
    spec = chain_spec(model) if spec is None else spec
    sizes = _check_spec(spec, _tensors(model))
    generator = torch.Generator().manual_seed(int(seed))
    perms = {g: torch.randperm(n, generator=generator) for g, n in sizes.items()}
    planted = WeightMatching(permutations={g: p.numpy() for g, p in perms.items()}, objective=np.zeros(1), sweeps=0,
                             converged=True, spec={g: [list(e) for e in entries] for g, entries in spec.items()})
    return planted.apply(model)

