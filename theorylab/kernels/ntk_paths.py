"""Which path each parameter takes through the empirical NTK, decided from the forward pass itself.

A parameter of a layer ``y = s W a + s_b b`` (``nn.Linear``, ``nn.Conv1d``/``nn.Conv2d`` through
their unfolded input, :class:`theorylab.models.ScaledLinear`, HuggingFace's ``Conv1D``) takes the
**layer path** (:mod:`theorylab.kernels.ntk_features`: the layer's inputs and output gradients,
from one batched forward and one batched backward per block) when a probe forward pass shows that

* the layer is called exactly once, on the parameter tensors themselves (not a re-parametrisation);
* its weight and bias are used nowhere else: in the autograd graph of the outputs, with the
  layer's output node removed, no path reaches them (tied or shared parameters, a weight also
  read by another op), and the layer's input does not depend on them;
* its input and output rows belong to one example each (example-major, e.g. (B, T, k) or a
  (B T, k) view): with more than one example in the probe, the output gradient of example 0
  vanishes on the rows of every other example.

Every other selected parameter takes the **Jacobian path**: per-example Jacobians by
``torch.func.vmap(jacrev)``, or one example at a time with plain autograd where vmap cannot batch
the model (recurrent layers, data-dependent control flow), chosen automatically with a one-line
warning.  Both paths are exact; :class:`BlockFeatures` records which one each parameter took and
why a layer was refused the layer path.
"""
from __future__ import annotations

import contextlib
import dataclasses
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import jacrev, jvp, vjp, vmap

from theorylab.batches import slice_batch, split_groups
from theorylab.functional import ModelFunction, ParamDict
from theorylab.kernels.ntk_features import Feature, JacobianFeature, layer_feature, prefers_kronecker
from theorylab.models import ScaledLinear

#: an input set: a tensor, a tuple of tensors (positional arguments) or a dict of tensors (keywords)
Inputs = Tensor | tuple[Tensor, ...] | dict[str, Tensor]

#: at most this many examples in the probe forward pass
PROBE_EXAMPLES = 8


def block_outputs(fn: ModelFunction, params: ParamDict, inputs: Inputs, n: int) -> Tensor:
    """The adapted model outputs on ``n`` examples as an (n, O) matrix."""
    out = fn.outputs(params, (inputs, None))
    if out.dim() == 0 or out.shape[0] != n:
        raise ValueError(f"the model output has shape {tuple(out.shape)}, whose leading dimension is not the "
                         f"{n} inputs; pass output=<function of the model output returning (batch, ...)>")
    return out.reshape(n, -1)


# -- layers with a linear dependence on their parameters -------------------------------------------
@dataclass(frozen=True)
class LinearForm:
    """How a layer's output depends on its parameters: ``y = weight_scale W patches(a) + bias_scale b``.

    ``patches(a)`` gives the layer input as rows ``(R, k)`` and ``positions(y)`` the output as rows
    ``(R, d)``, both example-major, for inputs and outputs with the batch as leading dimension.
    """

    weight_scale: float
    bias_scale: float
    patches: Callable[[Tensor], Tensor]
    positions: Callable[[Tensor], Tensor]


def _last_dim_rows(t: Tensor) -> Tensor:
    return t.reshape(-1, t.shape[-1])


def _channel_rows(y: Tensor) -> Tensor:
    """(B, C, *spatial) -> (B * prod(spatial), C)."""
    return y.flatten(2).transpose(1, 2).reshape(-1, y.shape[1])


def _conv_form(conv: nn.Conv1d | nn.Conv2d) -> LinearForm | None:
    """The unfolded-input form of a convolution (Grosse & Martens 2016), or None where unsupported."""
    if conv.groups != 1 or conv.padding_mode != "zeros":
        return None
    dims = 1 if isinstance(conv, nn.Conv1d) else 2
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            padding = (0,) * dims
        else:  # "same": symmetric only for an even total padding
            totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
            if any(t % 2 for t in totals):
                return None
            padding = tuple(t // 2 for t in totals)
    else:
        padding = tuple(conv.padding)
    square = (lambda v: (1,) + tuple(v)) if dims == 1 else tuple  # a 1-d convolution as a 1 x L image
    kernel, dilation, stride = square(conv.kernel_size), square(conv.dilation), square(conv.stride)
    pad = (0,) + padding if dims == 1 else padding

    def patches(a: Tensor) -> Tensor:
        if a.dim() != dims + 2:
            raise _NotPerExample(f"input of shape {tuple(a.shape)} has no batch dimension")
        image = a.unsqueeze(2) if dims == 1 else a
        cols = nn.functional.unfold(image, kernel, dilation=dilation, padding=pad, stride=stride)  # (B, C k, L)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])

    return LinearForm(1.0, 1.0, patches, _channel_rows)


def linear_form(module: nn.Module) -> LinearForm | None:
    """The linear form of ``module`` if its type is one with a layer path (exact types only)."""
    kind = type(module)
    if kind is nn.Linear or kind is _hf_conv1d():
        return LinearForm(1.0, 1.0, _last_dim_rows, _last_dim_rows)
    if kind is ScaledLinear:
        return LinearForm(float(module.multiplier), float(module.bias_multiplier), _last_dim_rows, _last_dim_rows)
    if kind in (nn.Conv1d, nn.Conv2d):
        return _conv_form(module)
    return None


def _hf_conv1d() -> type | None:
    """HuggingFace's ``Conv1D`` (a linear layer with a transposed weight) where transformers is loaded."""
    utils = sys.modules.get("transformers.pytorch_utils")
    return getattr(utils, "Conv1D", None)


class _NotPerExample(Exception):
    """A layer's rows cannot be assigned to examples."""


@dataclass
class Layer:
    """A candidate for the layer path: a module, its form, and the names of its selected weight and bias."""

    name: str
    module: nn.Module
    form: LinearForm
    weight: str | None
    bias: str | None
    kronecker: bool = True  # Kronecker form (else the Jacobian formed from the same inputs and gradients)
    positions: int = 1  # rows (tokens, patches) per example, and their sizes at the input and the output
    fan_in: int = 0
    fan_out: int = 0

    @property
    def parameters(self) -> list[str]:
        return [n for n in (self.weight, self.bias) if n is not None]

    def feature_bytes(self, num_outputs: int, itemsize: int) -> int:
        """Bytes per example of the layer's feature (:func:`theorylab.kernels.ntk_features.layer_feature`)."""
        if self.kronecker and self.weight:  # inputs (T, k) and output gradients (O, T, d)
            return itemsize * self.positions * (self.fan_in + num_outputs * self.fan_out)
        # the Jacobians (O, d k) of the weight and (O, d) of the bias
        return itemsize * num_outputs * self.fan_out * ((self.fan_in if self.weight else 0) + (1 if self.bias else 0))


def candidate_layers(fn: ModelFunction) -> list[Layer]:
    """Every module of a type with a linear form whose weight or bias is selected."""
    first_name = {alias: first for first, names in fn.aliases.items() for alias in names}
    layers = []
    for name, module in fn.model.named_modules():
        form = linear_form(module)
        if form is None:
            continue
        prefix = f"{name}." if name else ""
        weight, bias = (first_name.get(prefix + p) for p in ("weight", "bias"))
        weight = weight if weight in fn.params else None
        bias = bias if bias in fn.params and getattr(module, "bias", None) is not None else None
        if weight or bias:
            layers.append(Layer(name, module, form, weight, bias))
    return layers


@dataclass
class _Call:
    inputs: Any
    output: Any
    own_parameters: bool
    input_version: int

    def input_modified(self) -> bool:
        """Whether the input was written in place after the call (it would not be what the layer saw)."""
        return isinstance(self.inputs, Tensor) and self.inputs._version != self.input_version


@contextlib.contextmanager
def _recording(fn: ModelFunction, layers: list[Layer]) -> Iterator[dict[nn.Module, list[_Call]]]:
    """Forward hooks that record every call of the layers' modules (input, output, parameter identity).

    The module returns a copy of its output, so an in-place operation downstream (``ReLU(inplace=True)``)
    changes the copy, and the recorded output stays the tensor whose gradient the layer path needs.
    """
    calls: dict[nn.Module, list[_Call]] = {layer.module: [] for layer in layers}
    expected = {layer.module: layer for layer in layers}

    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        layer = expected[module]
        inputs = args[0] if args else kwargs.get("input", kwargs.get("x"))
        own = all(getattr(module, attr) is fn.params[name]
                  for attr, name in (("weight", layer.weight), ("bias", layer.bias)) if name is not None)
        version = inputs._version if isinstance(inputs, Tensor) else -1
        calls[module].append(_Call(inputs, output, own, version))
        return output.clone() if isinstance(output, Tensor) else None

    handles = [layer.module.register_forward_hook(hook, with_kwargs=True) for layer in layers]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def _reachable_leaves(root: Any, blocked: Any = None) -> set[int]:
    """Ids of the leaf tensors reachable in the autograd graph from ``root`` without passing ``blocked``."""
    seen, leaves, stack = set(), set(), [root]
    while stack:
        node = stack.pop()
        if node is None or node is blocked or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            leaves.add(id(variable))
        stack.extend(child for child, _ in node.next_functions)
    return leaves


def _output_gradients(out: Tensor, ys: list[Tensor], basis: Tensor) -> list[Tensor]:
    """``sum_{n,i} v[n, i] d out[n, i] / d y`` for every ``v`` in ``basis`` (V, n, O), batched: one
    (V, *y.shape) tensor per ``y``."""
    try:
        return list(torch.autograd.grad(out, ys, basis, retain_graph=True, is_grads_batched=True,
                                        materialize_grads=True))
    except (RuntimeError, NotImplementedError):  # no batching rule for some backward: one vector at a time
        rows = [torch.autograd.grad(out, ys, v, retain_graph=True, materialize_grads=True) for v in basis]
        return [torch.stack(column) for column in zip(*rows)]


def _every_output(out: Tensor) -> Tensor:
    """The basis ``v_i[n, j] = delta_ij`` (O, n, O): the gradients of every output, summed over examples."""
    n, n_out = out.shape
    return torch.eye(n_out, dtype=out.dtype, device=out.device)[:, None, :].expand(n_out, n, n_out)


def _first_example(out: Tensor) -> Tensor:
    """One vector (1, n, O): the outputs of example 0 only."""
    basis = torch.zeros(1, *out.shape, dtype=out.dtype, device=out.device)
    basis[0, 0] = 1.0
    return basis


def _grad_rows(layer: Layer, grads: Tensor, n: int) -> Tensor:
    """Output gradients ``(O', *y.shape)`` as rows per example and position, ``(O', n, T, d)``."""
    rows = layer.form.positions(grads.flatten(0, 1))
    return rows.reshape(grads.shape[0], n, -1, rows.shape[1])


class BlockFeatures:
    """The features (:mod:`theorylab.kernels.ntk_features`) of blocks of inputs, each parameter on its path.

    ``method``: "auto" (the layer path where it applies), "jacobian" (every parameter on the Jacobian
    path) or "ntk_vp" (no features: tiles by :meth:`ntk_vp_tile`).  The probe runs on
    ``probe_inputs`` (``n_probe`` examples) and fixes the paths, the number of outputs and the bytes
    of features per example.  ``blocks`` whether the per-output blocks (not their trace) will be
    contracted (it decides the cheaper form of each layer).
    """

    def __init__(self, fn: ModelFunction, probe_inputs: Inputs, n_probe: int, *, method: str, blocks: bool):
        self.fn = fn
        self.ntk_vp = method == "ntk_vp"
        self.layers: list[Layer] = []
        self.refused: dict[str, str] = {}
        self._vmap_works: bool | None = None
        candidates = candidate_layers(fn) if method == "auto" else []
        with torch.enable_grad(), _recording(fn, candidates) as calls:
            out = block_outputs(fn, {}, probe_inputs, n_probe)
        self.num_outputs = out.shape[1]
        layer_bytes = self._probe(candidates, calls, out, n_probe, blocks)
        on_layers = {name for layer in self.layers for name in layer.parameters}
        self.general = [name for name in fn.names if name not in on_layers]
        itemsize = torch.empty((), dtype=fn.dtype).element_size()
        self.bytes_per_example = layer_bytes + self.num_outputs * itemsize * sum(
            fn.params[name].numel() for name in self.general)
        # a tile's temporaries per pair of examples: a few (T x U) Grams of the Kronecker form, per output pair
        positions = max([layer.positions ** 2 for layer in self.layers if layer.kronecker], default=1)
        self.bytes_per_pair = 4 * itemsize * positions * (self.num_outputs ** 2 if blocks else 1)

    # -- the probe: which layers take the layer path ----------------------------------------------
    def _probe(self, candidates: list[Layer], calls: dict[nn.Module, list[_Call]], out: Tensor, n: int,
               blocks: bool) -> int:
        """Choose the layers of the layer path; returns the bytes of their features per example."""
        accepted = []
        for layer in candidates:
            refused = self._refusals(layer, calls[layer.module], out, n)
            for name, reason in refused.items():
                self.refused.setdefault(name, reason)
            kept = dataclasses.replace(layer, weight=None if layer.weight in refused else layer.weight,
                                       bias=None if layer.bias in refused else layer.bias)
            if kept.parameters:
                accepted.append(kept)
        if not accepted:
            return 0
        with torch.enable_grad():  # one backward: the outputs of example 0 must not reach other examples' rows
            grads = _output_gradients(out, [calls[layer.module][0].output for layer in accepted], _first_example(out))
        for layer, g in zip(accepted, grads):
            rows = _grad_rows(layer, g, n)  # (1, n, T, d)
            if bool((rows[0, 1:] != 0).any()):
                self.refused.update({name: "it mixes examples (its rows are not one example each)"
                                     for name in layer.parameters})
                continue
            layer.positions, layer.fan_out = rows.shape[2], rows.shape[3]
            layer.fan_in = layer.form.patches(calls[layer.module][0].inputs).shape[1]
            layer.kronecker = prefers_kronecker(layer.positions, layer.fan_in, layer.fan_out, self.num_outputs,
                                                blocks=blocks)
            self.layers.append(layer)
        return sum(layer.feature_bytes(self.num_outputs, out.element_size()) for layer in self.layers)

    def _refusals(self, layer: Layer, calls: list[_Call], out: Tensor, n: int) -> dict[str, str]:
        """``{parameter: why it cannot take the layer path}`` for the layer's parameters (before the
        per-example check)."""
        reason = self._layer_refusal(layer, calls, n)
        if reason is not None:
            return dict.fromkeys(layer.parameters, reason)
        call = calls[0]
        elsewhere = _reachable_leaves(out.grad_fn, blocked=call.output.grad_fn)
        upstream = _reachable_leaves(call.inputs.grad_fn) if call.inputs.requires_grad else set()
        refused = {}
        for name in layer.parameters:
            if id(self.fn.params[name]) in elsewhere:
                refused[name] = "it is also used elsewhere in the forward pass (tied or shared)"
            elif id(self.fn.params[name]) in upstream:
                refused[name] = "the layer's input depends on it"
        return refused

    @staticmethod
    def _layer_refusal(layer: Layer, calls: list[_Call], n: int) -> str | None:
        """Why none of the layer's parameters can take the layer path (None if they may)."""
        if len(calls) != 1:
            return f"module called {len(calls)} times in the forward pass"
        call = calls[0]
        if not call.own_parameters:
            return "the module's weight is not the parameter itself (a re-parametrisation)"
        if not (isinstance(call.inputs, Tensor) and isinstance(call.output, Tensor)) or call.output.grad_fn is None:
            return "the module's input or output is not a tensor in the graph"
        if call.input_modified():
            return "its input is modified in place after the call"
        try:
            rows = layer.form.patches(call.inputs).shape[0], layer.form.positions(call.output).shape[0]
        except _NotPerExample as exc:
            return str(exc)
        if rows[0] != rows[1] or rows[0] % n:
            return "its rows do not split into examples"
        return None

    # -- features of a block ----------------------------------------------------------------------
    def __call__(self, inputs: Inputs, n: int) -> list[Feature]:
        """The features of one block of ``n`` examples, in a fixed order (layers, then the Jacobian)."""
        features: list[Feature] = []
        if self.layers:
            with torch.enable_grad(), _recording(self.fn, self.layers) as calls:
                out = block_outputs(self.fn, {}, inputs, n)
                if any(len(calls[layer.module]) != 1 or calls[layer.module][0].input_modified()
                       for layer in self.layers):
                    raise RuntimeError("the layers were called differently than in the first forward pass (the "
                                       "model's structure depends on its input); use method='jacobian'")
                grads = _output_gradients(out, [calls[layer.module][0].output for layer in self.layers],
                                          _every_output(out))
            for layer, g in zip(self.layers, grads):
                features.append(self._feature(layer, calls[layer.module][0].inputs, _grad_rows(layer, g, n), n))
        if self.general:
            features.append(JacobianFeature(self._jacobians(inputs, n)))
        return features

    def _feature(self, layer: Layer, inputs: Tensor, grad_rows: Tensor, n: int) -> Feature:
        """The layer's feature from its input and its output-gradient rows ``(O, n, T, d)``."""
        g = grad_rows.transpose(0, 1).detach()  # (n, O, T, d)
        a = layer.form.patches(inputs.detach()).reshape(n, g.shape[2], -1) if layer.weight else None
        return layer_feature(a, g, layer.form.weight_scale, layer.form.bias_scale if layer.bias else 0.0,
                             kronecker=layer.kronecker)

    @property
    def paths(self) -> dict[str, str]:
        """``{parameter: path}``: "kronecker", "layer-jacobian" (the layer's Jacobian formed from its inputs
        and output gradients), "jacobian" (vmap), "jacobian-loop" (one example at a time) or "ntk_vp"."""
        on_layers = {name: "kronecker" if layer.kronecker and layer.weight else "layer-jacobian"
                     for layer in self.layers for name in layer.parameters}
        general = "ntk_vp" if self.ntk_vp else "jacobian-loop" if self._vmap_works is False else "jacobian"
        return {name: on_layers.get(name, general) for name in self.fn.names}

    # -- the Jacobian path ------------------------------------------------------------------------
    def _jacobians(self, inputs: Inputs, n: int) -> list[Tensor]:
        """Per-example Jacobians ``(n, O, P_k)`` of the parameters on the Jacobian path."""
        theta = {name: self.fn.params[name].detach() for name in self.general}
        if self._vmap_works is not False:
            try:
                jac = vmap(jacrev(self._one_example), in_dims=(None, 0))(theta, split_groups(inputs, 1))
                self._vmap_works = True
                return [jac[name].reshape(n, self.num_outputs, -1) for name in self.general]
            except (RuntimeError, NotImplementedError) as exc:
                if self._vmap_works:  # it worked on an earlier block: a real error
                    raise
                if "randomness" in str(exc):
                    raise ValueError("the model draws random numbers in its forward pass (dropout in train mode?), "
                                     "so its NTK is undefined; use mode='eval'") from None
                looped = self._looped_jacobians(theta, inputs, n)  # raises here if the model itself fails
                warnings.warn(f"torch.func.vmap cannot batch {type(self.fn.model).__name__} "
                              f"({str(exc).splitlines()[0][:120]}); its Jacobian is computed one example at a time",
                              RuntimeWarning, stacklevel=4)
                self._vmap_works = False
                return looped
        return self._looped_jacobians(theta, inputs, n)

    def _one_example(self, theta: ParamDict, example: Inputs) -> Tensor:
        return block_outputs(self.fn, theta, example, 1)[0]

    def _looped_jacobians(self, theta: ParamDict, inputs: Inputs, n: int) -> list[Tensor]:
        """Plain autograd, one example and one output at a time."""
        leaves = {name: t.detach().requires_grad_(True) for name, t in theta.items()}
        per_example = []
        with torch.enable_grad():
            for i in range(n):
                out = self._one_example(leaves, slice_batch(inputs, slice(i, i + 1)))
                per_output = [torch.autograd.grad(out[j], list(leaves.values()), retain_graph=True, allow_unused=True,
                                                  materialize_grads=True) for j in range(out.shape[0])]
                per_example.append([torch.stack([g[k].reshape(-1) for g in per_output]) for k in range(len(leaves))])
        return [torch.stack([rows[k] for rows in per_example]) for k in range(len(leaves))]

    # -- NTK-vector products ----------------------------------------------------------------------
    def ntk_vp_tile(self, xa: Inputs, n_a: int, xb: Inputs, n_b: int) -> Tensor:
        """The (n_a, n_b, O, O) tile of every selected parameter by NTK-vector products: column ``v`` is
        ``J(xb) J(xa)^T v`` for a basis vector ``v`` (Novak, Sohl-Dickstein & Schoenholz 2022)."""
        theta = {name: self.fn.params[name].detach() for name in self.fn.names}
        n_out = self.num_outputs
        try:
            _, pullback = vjp(lambda p: block_outputs(self.fn, p, xa, n_a), theta)
            basis = torch.eye(n_a * n_out, dtype=self.fn.dtype, device=self.fn.device).view(-1, n_a, n_out)

            def column(v: Tensor) -> Tensor:
                (tangent,) = pullback(v)
                return jvp(lambda p: block_outputs(self.fn, p, xb, n_b), (theta,), (tangent,))[1]

            k = vmap(column)(basis)
        except (RuntimeError, NotImplementedError) as exc:
            raise ValueError(f"method='ntk_vp' cannot run on {type(self.fn.model).__name__} "
                             f"({str(exc).splitlines()[0][:120]}); use method='auto' or 'jacobian'") from None
        return k.view(n_a, n_out, n_b, n_out).permute(0, 2, 1, 3)


def num_examples(inputs: Inputs) -> int:
    """The leading dimension shared by the tensors of an input set."""
    first = inputs if isinstance(inputs, Tensor) else next(iter(inputs.values() if isinstance(inputs, dict)
                                                                 else inputs))
    return int(first.shape[0])
