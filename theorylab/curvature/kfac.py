"""K-FAC: a block-diagonal Kronecker-factored approximation of the Fisher / GGN.

For a layer ``s = W a (+ b)`` (``nn.Linear``; ``nn.Conv2d`` on unfolded patches), the gradient of
sample ``i``'s loss is ``g_i = vec(delta_i a_i^T)`` with ``a_i`` the layer input (with a trailing
1 for the bias) and ``delta_i = d loss_i / d s``; parameters are flattened row-major, weight then
bias, so ``g_i = delta_i (x) a_i``.  Each Fisher term is a sum over backpropagated vectors ``c``
(the columns of a factor ``S_i`` of the output-space matrix, ``Lambda_i = S_i S_i^T``):
``sum_c (delta_ic delta_ic^T) (x) (a_i a_i^T)``.  K-FAC (Martens & Grosse 2015; Grosse & Martens 2016
for convolutions) replaces the mean of Kronecker products by the Kronecker product of means,

    F_layer ~ G (x) A,    G = (1/N) sum_i sum_c delta_ic delta_ic^T,    A = (1/N) sum_i a_i a_i^T,

and drops the blocks between layers.  With one sample (``N = 1``) this is exactly the layer's
diagonal block of the Fisher; when every ``delta_i delta_i^T`` is the same matrix (a linear layer
under the squared error) it is exact for any ``N``.

``fisher_type`` chooses ``S_i``: ``"exact"`` the closed-form square root of the expected Fisher
(``diag(sqrt p) - p sqrt(p)^T`` for softmax cross-entropy, ``sqrt(2/k) I`` for the mean squared
error: K-FAC of the GGN, C backward passes per batch), ``"mc"`` ``num_draws`` gradients at labels
drawn from the model (divided by ``sqrt(num_draws)``), ``"empirical"`` the gradient at the observed
label.

**Weight sharing** (Eschenhagen, Immer, Turner, Schneider & Hennig 2023, "Kronecker-factored
approximate curvature for modern neural network architectures").  A layer applied at ``R``
positions per sample (the tokens of a sequence for ``nn.Linear`` on ``(N, R, d)`` inputs, the ``R``
output pixels of a convolution) has ``g_i = sum_r delta_ir (x) a_ir``:

* ``"expand"`` treats positions as extra samples: ``A = (1/(N R)) sum_{i,r} a_ir a_ir^T``,
  ``G = (1/N) sum_{i,r,c} delta_irc delta_irc^T``; exact for a linear layer whose loss is a sum over
  positions (per-token losses);
* ``"reduce"`` sums over positions first: ``A = (1/N) sum_i abar_i abar_i^T`` with ``abar_i`` the mean
  of ``a_ir`` over ``r``, ``G = (1/N) sum_{i,c} (sum_r delta_irc)(sum_r delta_irc)^T``; exact for a
  linear layer whose outputs are averaged over positions before the loss (pooling).

Both are K-FAC when ``R = 1``.  Products cost ``G V A`` per layer; the factors are built in one
pass over the data at construction (sample-weighted, summed over the ranks of ``process_group``).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from theorylab._params import ParamSpec
from theorylab._state import Mode
from theorylab.adapters import OutputFn
from theorylab.analyzer import analyzer
from theorylab.batches import Batch, Data, batch_size
from theorylab.curvature.fisher import (Likelihood, decomposes_over_samples, infer_likelihood, rank_of,
                                        sample_gradients)
from theorylab.curvature.operators import CurvatureOperator, LinearOperator, LossFn
from theorylab.functional import ModelFunction

FisherType = Literal["exact", "mc", "empirical"]
FISHER_TYPES: tuple[str, ...] = ("exact", "mc", "empirical")
WeightSharing = Literal["expand", "reduce"]
WEIGHT_SHARINGS: tuple[str, ...] = ("expand", "reduce")


@dataclass
class KFACLayer:
    """One Kronecker block: the module, its selected weight/bias names, and the factors ``G`` and ``A``.

    ``columns`` selects the rows/columns of the bias-augmented input factor that belong to the
    selected parameters (the weight's ``D`` inputs, the bias's trailing one); ``A`` is kept restricted
    to them.
    """

    name: str
    module: nn.Module
    weight: str | None
    bias: str | None
    in_features: int
    out_features: int
    A: Tensor | None = None
    G: Tensor | None = None

    @property
    def columns(self) -> Tensor:
        keep = ([True] * self.in_features if self.weight else [False] * self.in_features)
        if self.module.bias is not None:
            keep.append(self.bias is not None)
        return torch.tensor(keep)


def _input_scales(module: nn.Module) -> tuple[float, float]:
    """``(input multiplier, bias multiplier)``: 1 and 1 except for ``theorylab.models.ScaledLinear``."""
    return float(getattr(module, "multiplier", 1.0)), float(getattr(module, "bias_multiplier", 1.0))


def _is_linear(module: nn.Module) -> bool:
    from theorylab.models import ScaledLinear

    return isinstance(module, (nn.Linear, ScaledLinear))


def _check_conv(name: str, conv: nn.Conv2d) -> None:
    if conv.groups != 1 or isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        raise ValueError(f"K-FAC covers nn.Conv2d with groups=1, numeric padding and padding_mode='zeros'; "
                         f"{name!r} has groups={conv.groups}, padding={conv.padding!r}, "
                         f"padding_mode={conv.padding_mode!r}")


def kfac_layers(fn: ModelFunction) -> list[KFACLayer]:
    """The supported layers that hold the selected parameters (a clear error for any other parameter)."""
    model = fn.model
    owners: dict[int, list[str]] = {}
    for module_name, module in model.named_modules():
        for p in module.parameters(recurse=False):
            owners.setdefault(id(p), []).append(module_name)
    named = dict(model.named_parameters())
    selected = set(fn.names)
    layers, covered = [], set()
    for module_name, module in model.named_modules():
        if not (_is_linear(module) or isinstance(module, nn.Conv2d)):
            continue
        prefix = f"{module_name}." if module_name else ""
        weight = f"{prefix}weight" if f"{prefix}weight" in selected else None
        bias = f"{prefix}bias" if module.bias is not None and f"{prefix}bias" in selected else None
        if weight is None and bias is None:
            continue
        for name in filter(None, (weight, bias)):
            if len(owners[id(named[name])]) > 1:
                raise ValueError(f"{name!r} is shared by the modules {owners[id(named[name])]}; K-FAC needs "
                                 "each parameter in one layer (select the other parameters with params=)")
        if isinstance(module, nn.Conv2d):
            _check_conv(module_name, module)
            in_features = module.in_channels * math.prod(module.kernel_size)
            out_features = module.out_channels
        else:
            out_features, in_features = module.weight.shape
        layers.append(KFACLayer(module_name, module, weight, bias, in_features, out_features))
        covered |= {weight, bias}
    missing = selected - covered
    if missing:
        kinds = {n: type(model.get_submodule(n.rsplit(".", 1)[0]) if "." in n else model).__name__
                 for n in sorted(missing)}
        raise ValueError(f"K-FAC covers nn.Linear and nn.Conv2d layers only; these selected parameters belong to "
                         f"other modules: {kinds}; restrict params= to the supported layers")
    return layers


def _input_positions(module: nn.Module, inputs: Tensor) -> Tensor:
    """A layer's inputs as ``(n, R, D')``: ``R`` positions, the bias column appended."""
    if isinstance(module, nn.Conv2d):
        patches = F.unfold(inputs, module.kernel_size, dilation=module.dilation, padding=module.padding,
                           stride=module.stride)  # (n, C_in kh kw, R)
        a = patches.transpose(1, 2)
    else:
        a = inputs.reshape(inputs.shape[0], -1, inputs.shape[-1])
    scale, bias_scale = _input_scales(module)
    a = a * scale
    if module.bias is not None:
        a = torch.cat([a, torch.full((*a.shape[:2], 1), bias_scale, dtype=a.dtype, device=a.device)], dim=2)
    return a


def _output_positions(module: nn.Module, grad: Tensor) -> Tensor:
    """Gradients at a layer's output as ``(n, R, out)``."""
    if isinstance(module, nn.Conv2d):
        return grad.flatten(2).transpose(1, 2)
    return grad.reshape(grad.shape[0], -1, grad.shape[-1])


class KFACOperator(CurvatureOperator):
    """Block-diagonal ``G_l (x) A_l`` over the selected layers (see :func:`kfac`)."""

    cache_graph = False

    def __init__(self, fn: ModelFunction, *, fisher_type: str, likelihood: str | None, weight_sharing: str,
                 num_draws: int, seed: int):
        super().__init__(fn)
        self.fisher_type, self.likelihood, self.weight_sharing = fisher_type, likelihood, weight_sharing
        self.num_draws, self.seed = num_draws, seed
        self.layers = kfac_layers(fn)
        self._generator = torch.Generator().manual_seed(int(seed) + 1_000_003 * rank_of(fn.process_group))
        self._index = {name: i for i, name in enumerate(fn.names)}
        ends = torch.tensor([math.prod(s) for s in fn.shapes]).cumsum(0).tolist()
        self._offsets = [(end - math.prod(s), end) for end, s in zip(ends, fn.shapes)]
        self._build_factors()

    # -- factors ----------------------------------------------------------------------------------
    def _build_factors(self) -> None:
        fn = self._fn
        sizes = [(layer.in_features + (layer.module.bias is not None)) ** 2 + layer.out_features ** 2
                 for layer in self.layers]
        with torch.enable_grad(), fn.evaluating():
            packed = fn.data_mean(lambda batch: torch.cat(self._batch_factors(batch)))
        for layer, flat in zip(self.layers, packed.split(sizes)):
            d, k = layer.in_features + (layer.module.bias is not None), layer.out_features
            keep = layer.columns.to(flat.device)
            layer.A, layer.G = flat[:d * d].view(d, d)[keep][:, keep], flat[d * d:].view(k, k)

    def _batch_factors(self, batch: Batch) -> list[Tensor]:
        """``[A_l.flatten(), G_l.flatten(), ...]``: the batch means of the factors."""
        fn, n = self._fn, batch_size(batch)
        records: dict[str, list[tuple[Tensor, Tensor]]] = {layer.name: [] for layer in self.layers}

        def recorder(name: str):
            def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
                records[name].append((inputs[0].detach(), output))
            return hook

        handles = [layer.module.register_forward_hook(recorder(layer.name)) for layer in self.layers]
        try:
            out = fn.outputs(fn.params, batch)
        finally:
            for handle in handles:
                handle.remove()
        for layer in self.layers:
            if len(records[layer.name]) != 1:
                raise ValueError(f"layer {layer.name!r} ran {len(records[layer.name])} times in one forward pass; "
                                 "K-FAC needs each layer applied once (select other parameters with params=)")
        if out.shape[0] != n:
            raise ValueError(f"K-FAC needs one output row per sample: outputs {tuple(out.shape)} for {n} samples")
        layer_outputs = [records[layer.name][0][1] for layer in self.layers]
        sums = {layer.name: torch.zeros(layer.out_features, layer.out_features, dtype=out.dtype, device=out.device)
                for layer in self.layers}
        for grad_output in self._backpropagated(out.detach(), batch):
            grads = torch.autograd.grad(out, layer_outputs, grad_output, retain_graph=True, allow_unused=True,
                                        materialize_grads=True)
            for layer, g in zip(self.layers, grads):
                delta = _output_positions(layer.module, g)  # (n, R, out)
                if self.weight_sharing == "reduce":
                    delta = delta.sum(dim=1, keepdim=True)
                delta = delta.reshape(-1, delta.shape[-1])
                sums[layer.name] += delta.T @ delta
        factors = []
        for layer in self.layers:
            a = _input_positions(layer.module, records[layer.name][0][0])
            a = a.mean(dim=1) if self.weight_sharing == "reduce" else a.reshape(-1, a.shape[-1])
            factors += [(a.T @ a / len(a)).reshape(-1), (sums[layer.name] / n).reshape(-1)]
        return factors

    def _backpropagated(self, out: Tensor, batch: Batch) -> list[Tensor]:
        """Output-shaped tensors whose row ``i`` is a column of ``S_i`` (``Lambda_i = S_i S_i^T``)."""
        fn, n = self._fn, batch_size(batch)
        if self.fisher_type == "empirical":
            return [sample_gradients(fn, out, fn.targets(batch), 1.0)]
        if self.fisher_type == "mc":
            count = self.num_draws
            if self.likelihood == "categorical":
                probs = torch.softmax(out.to(torch.float64).cpu(), dim=1)
                labels = torch.multinomial(probs, count, replacement=True, generator=self._generator).T
                labels = labels.to(out.device)
            else:
                noise = torch.randn((count, *out.shape), generator=self._generator, dtype=torch.float64)
                labels = out + (out[0].numel() / 2.0) ** 0.5 * noise.to(device=out.device, dtype=out.dtype)
            return [sample_gradients(fn, out, label, count ** -0.5) for label in labels]
        if self.likelihood == "categorical":
            if out.dim() != 2:
                raise ValueError(f"the categorical Fisher needs (samples, classes) logits, got {tuple(out.shape)}")
            p = torch.softmax(out, dim=1)
            root = p.sqrt()
            return [root[:, c:c + 1] * (torch.eye(p.shape[1], dtype=p.dtype, device=p.device)[c] - p)
                    for c in range(p.shape[1])]  # column c of diag(sqrt p) - p sqrt(p)^T
        flat = torch.zeros(out.shape[0], out[0].numel(), dtype=out.dtype, device=out.device)
        columns = []
        for c in range(flat.shape[1]):
            column = flat.clone()
            column[:, c] = (2.0 / flat.shape[1]) ** 0.5
            columns.append(column.view_as(out))
        return columns

    # -- products ---------------------------------------------------------------------------------
    def _spans(self, layer: KFACLayer) -> list[tuple[int, int]]:
        """The flat index ranges of the layer's selected weight and bias."""
        return [self._offsets[self._index[name]] for name in (layer.weight, layer.bias) if name is not None]

    def blockwise(self, vectors: Tensor, transform: Callable[[int, KFACLayer, Tensor], Tensor]) -> Tensor:
        """``transform(i, layer, V)`` on each layer's block of ``vectors`` ``(P, k)``, as ``V`` of shape
        ``(k, out, D')`` (weight columns, then the bias column); zero outside the layers."""
        k = vectors.shape[1]
        out = torch.zeros_like(vectors)
        for i, layer in enumerate(self.layers):
            spans = self._spans(layer)
            block = torch.cat([vectors[lo:hi].T.reshape(k, layer.out_features, -1) for lo, hi in spans], dim=2)
            product = transform(i, layer, block)
            start = 0
            for lo, hi in spans:
                width = (hi - lo) // layer.out_features
                out[lo:hi] = product[:, :, start:start + width].reshape(k, -1).T
                start += width
        return out

    def _matmat(self, vectors: Tensor) -> Tensor:
        # (G (x) A) vec_row(V) = vec_row(G V A^T), A symmetric
        return self.blockwise(vectors, lambda i, layer, block: layer.G @ block @ layer.A)

    def inverse(self, damping: float) -> KFACInverseOperator:
        """``(G (x) A + damping I)^{-1}`` block by block, exactly (see :class:`KFACInverseOperator`)."""
        return KFACInverseOperator(self, damping)

    def exact_diagonal(self) -> Tensor:
        """``diag(G (x) A) = diag(G) (x) diag(A)`` per layer, as a flat vector."""
        diagonal = torch.zeros(self.shape[0], dtype=self.dtype, device=self.device)
        for layer in self.layers:
            block = torch.outer(torch.diagonal(layer.G), torch.diagonal(layer.A))  # (out, D')
            start = 0
            for lo, hi in self._spans(layer):
                width = (hi - lo) // layer.out_features
                diagonal[lo:hi] = block[:, start:start + width].reshape(-1)
                start += width
        return diagonal


class KFACInverseOperator(LinearOperator):
    """``(G (x) A + lambda I)^{-1}`` per K-FAC block, from eigendecompositions of the factors.

    With ``G = U diag(g) U^T`` and ``A = W diag(a) W^T``, ``G (x) A + lambda I = (U (x) W) diag(g_i a_j +
    lambda) (U (x) W)^T``, so ``(G (x) A + lambda I)^{-1} vec(V) = vec(U [(U^T V W) / (g a^T + lambda)] W^T)``:
    exact, at the cost of two eigendecompositions per layer once and four small matrix products per
    product (Martens & Grosse 2015 damp each factor instead; this is the inverse of the damped K-FAC
    matrix itself).  A preconditioner for :func:`theorylab.curvature.solve`, or K-FAC influence scores.
    """

    def __init__(self, op: KFACOperator, damping: float):
        if not (isinstance(damping, (int, float)) and not isinstance(damping, bool) and damping > 0):
            raise ValueError(f"damping must be a positive number (K-FAC factors can be singular), got {damping!r}")
        super().__init__(op.shape[0], op.dtype, op.device)
        self.op, self.damping = op, float(damping)
        self._eigen = []
        for layer in op.layers:
            g, u = torch.linalg.eigh(layer.G.to(torch.float64))
            a, w = torch.linalg.eigh(layer.A.to(torch.float64))
            scale = 1.0 / (torch.outer(g, a) + self.damping)
            self._eigen.append(tuple(t.to(op.dtype) for t in (u, w, scale)))

    def _matmat(self, vectors: Tensor) -> Tensor:
        def inverse(i: int, layer: KFACLayer, block: Tensor) -> Tensor:
            u, w, scale = self._eigen[i]
            return u @ ((u.T @ block @ w) * scale) @ w.T

        return self.op.blockwise(vectors, inverse)


@analyzer
def kfac(model: nn.Module, loss_fn: LossFn, data: Data, *, fisher_type: FisherType = "exact",
         likelihood: Likelihood | None = None, weight_sharing: WeightSharing = "expand", num_draws: int = 1,
         seed: int = 0, params: ParamSpec = None, mode: Mode = "eval", dtype: torch.dtype | None = None,
         device: str | torch.device | None = None, process_group: Any = None,
         output: OutputFn | None = None) -> KFACOperator:
    """K-FAC for the ``nn.Linear`` and ``nn.Conv2d`` layers holding the selected parameters, as a lazy operator.

    ``fisher_type``: "exact" (K-FAC of the expected Fisher = GGN), "mc" (``num_draws`` sampled
    labels per input, from ``seed``) or "empirical" (observed labels); ``likelihood`` as in
    :func:`theorylab.curvature.fisher` (needed for "exact" and "mc"); ``weight_sharing``: "expand"
    or "reduce" (see the module docstring).  Other options as in
    :func:`theorylab.curvature.hessian`.  Every selected parameter must belong to a supported layer.
    """
    if fisher_type not in FISHER_TYPES:
        raise ValueError(f"fisher_type must be one of {FISHER_TYPES}, got {fisher_type!r}")
    if weight_sharing not in WEIGHT_SHARINGS:
        raise ValueError(f"weight_sharing must be one of {WEIGHT_SHARINGS}, got {weight_sharing!r}")
    if isinstance(num_draws, bool) or not isinstance(num_draws, int) or num_draws < 1:
        raise ValueError(f"num_draws must be a positive integer, got {num_draws!r}")
    if fisher_type == "empirical":
        if not decomposes_over_samples(loss_fn):
            raise ValueError("the empirical K-FAC needs per-sample output gradients: use nn.CrossEntropyLoss() (no "
                             "class weights) or nn.MSELoss() with reduction='mean'")
        likelihood = None
    else:
        likelihood = infer_likelihood(loss_fn, likelihood)
    fn = ModelFunction(model, loss_fn, data, params=params, mode=mode, dtype=dtype, device=device,
                       process_group=process_group, output=output)
    op = KFACOperator(fn, fisher_type=fisher_type, likelihood=likelihood, weight_sharing=weight_sharing,
                      num_draws=num_draws, seed=seed)
    op.meta.update(fisher_type=fisher_type, weight_sharing=weight_sharing,
                   num_draws=num_draws if fisher_type == "mc" else None,
                   layers=[layer.name for layer in op.layers])
    return op
