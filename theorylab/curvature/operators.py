"""Curvature matrices of a model as lazy symmetric linear operators.

For parameters ``theta`` (the selected ones, flattened to length ``P``), a model ``f`` and a loss
``L(theta) = sum_b n_b L_b(theta) / N`` over batches ``b`` of ``n_b`` samples (``L_b`` the batch
mean returned by ``loss_fn``, ``N = sum_b n_b``; see :mod:`theorylab.batches`):

* :func:`hessian` is ``H = d^2 L / d theta^2``; its products ``H v`` are exact Hessian-vector
  products (Pearlmutter 1994), computed either by double backward through a gradient graph
  (cached once when the data is one batch) or forward-over-reverse, ``jvp(grad L)``.
* :func:`ggn` is the generalised Gauss-Newton matrix ``G = sum_b n_b J_b^T H_b J_b / N``
  (Schraudolph 2002), where ``J_b = d f(x_b) / d theta`` and ``H_b = d^2 L_b / d f^2`` is the
  Hessian of the loss in the model outputs; ``G v`` is a Jacobian-vector product, an output-space
  Hessian-vector product and a vector-Jacobian product, all exact.

Both are Hessians of the *mean* loss: multiplying the loss by ``c`` multiplies every eigenvalue
by ``c`` (``nn.MSELoss`` also averages over output coordinates, so its Hessian for a linear model
``x -> W x`` with ``k`` outputs is ``2 X^T X / (n k)`` per output row).

The operators evaluate the model through :class:`theorylab.functional.ModelFunction`, so the model
is never changed; data may be tuple or dict batches, the model may return a HuggingFace output or
a tuple (``output=`` picks another tensor), and attention runs on its twice-differentiable math
back-end during products.  In train mode every pass over the data restarts the random-number
generator from the state it had when the operator was built, so dropout masks are identical in
every product and the operator is a fixed symmetric matrix.  With ``process_group`` the data is
sharded over ranks; every product is summed over ranks with weights ``n_rank / N`` so that each
rank holds the full-data operator.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import scipy.sparse.linalg
import torch
from torch import Tensor, nn

from theorylab._params import ParamSpec
from theorylab._state import Mode
from theorylab.adapters import OutputFn
from theorylab.analyzer import analyzer
from theorylab.batches import Batch, Data, batch_size
from theorylab.curvature.blocks import BlockProducts, join_rows, split_rows
from theorylab.functional import ModelFunction

Backend = Literal["double_backward", "forward_over_reverse"]
BACKENDS: tuple[str, ...] = ("double_backward", "forward_over_reverse")
LossFn = Callable[[Any, Tensor], Tensor]


class LinearOperator:
    """A symmetric linear map ``R^P -> R^P`` applied lazily: ``op @ v``.

    ``v`` is a flat tensor ``(P,)``, a matrix ``(P, k)`` of column vectors or a NumPy array of
    those shapes; the product has the same shape (a tensor in the operator's dtype and device, or
    a NumPy array for NumPy input).  Subclasses implement :meth:`_matmat` on ``(P, k)`` tensors of
    any strides; the fastest layout is ``V = R.T`` for a ``(k, P)`` tensor ``R`` of contiguous rows,
    which is passed on without a copy, and products come back in that layout.
    ``num_matvecs`` counts the vectors multiplied so far; ``block_products`` says how a block of
    vectors is multiplied (:class:`~theorylab.curvature.blocks.BlockProducts`).
    """

    def __init__(self, size: int, dtype: torch.dtype, device: torch.device):
        self.shape = (int(size), int(size))
        self.dtype = dtype
        self.device = torch.device(device)
        self.num_matvecs = 0
        self.block_products = BlockProducts()

    def _matmat(self, vectors: Tensor) -> Tensor:
        raise NotImplementedError

    def __matmul__(self, v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return (self @ torch.from_numpy(v)).cpu().numpy()
        if not isinstance(v, Tensor):
            raise TypeError(f"cannot multiply a {type(self).__name__} by a {type(v).__name__}")
        if v.dim() not in (1, 2) or v.shape[0] != self.shape[0]:
            raise ValueError(f"expected a vector of length {self.shape[0]} or a ({self.shape[0]}, k) matrix, "
                             f"got shape {tuple(v.shape)}")
        matrix = v.reshape(self.shape[0], -1).to(device=self.device, dtype=self.dtype)
        out = self._matmat(matrix)
        self.num_matvecs += matrix.shape[1]
        return out.reshape(v.shape)

    def to_dense(self) -> Tensor:
        """The full ``(P, P)`` matrix, from ``P`` products with unit vectors (small problems only)."""
        size = self.shape[0]
        columns = [self @ torch.eye(size, dtype=self.dtype, device=self.device)[i:i + 256].T  # unit rows
                   for i in range(0, size, 256)]
        return torch.cat(columns, dim=1)

    def to_scipy(self) -> scipy.sparse.linalg.LinearOperator:
        """This operator as a ``scipy.sparse.linalg.LinearOperator`` (NumPy in, NumPy out)."""
        np_dtype = torch.empty((), dtype=self.dtype).numpy().dtype

        def matmat(x: np.ndarray) -> np.ndarray:
            return self @ np.ascontiguousarray(x, dtype=np_dtype)

        return scipy.sparse.linalg.LinearOperator(self.shape, matvec=matmat, matmat=matmat, rmatvec=matmat,
                                                  rmatmat=matmat, dtype=np_dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype}, device={self.device})"

    # -- operator algebra (theorylab.curvature.algebra): op + op, op - op, c * op, op / c, -op ----------
    def __add__(self, other: Any) -> LinearOperator:
        from theorylab.curvature.algebra import SumOperator

        return SumOperator([self, other]) if isinstance(other, LinearOperator) else NotImplemented

    def __sub__(self, other: Any) -> LinearOperator:
        return self + (-1.0) * other if isinstance(other, LinearOperator) else NotImplemented

    def __mul__(self, scalar: Any) -> LinearOperator:
        from theorylab.curvature.algebra import ScaledOperator, is_scalar

        return ScaledOperator(self, scalar) if is_scalar(scalar) else NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, scalar: Any) -> LinearOperator:
        from theorylab.curvature.algebra import is_scalar

        if not is_scalar(scalar):
            return NotImplemented
        if float(scalar) == 0.0:
            raise ZeroDivisionError("cannot divide an operator by zero")
        return self * (1.0 / float(scalar))

    def __neg__(self) -> LinearOperator:
        return (-1.0) * self


class DenseOperator(LinearOperator):
    """A dense symmetric matrix as an operator (checked for squareness and symmetry)."""

    def __init__(self, matrix: Tensor | np.ndarray):
        matrix = torch.as_tensor(matrix)
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"the matrix must be square, got shape {tuple(matrix.shape)}")
        if not (matrix.is_floating_point() and matrix.dtype in (torch.float16, torch.bfloat16, torch.float32,
                                                                torch.float64)):
            raise ValueError(f"the matrix must be real floating point, got {matrix.dtype}")
        if not torch.isfinite(matrix).all():
            raise ValueError("the matrix has non-finite entries")
        asymmetry = float((matrix - matrix.T).abs().max()) if matrix.numel() else 0.0
        scale = float(matrix.abs().max()) if matrix.numel() else 0.0
        if asymmetry > 100 * torch.finfo(matrix.dtype).eps * scale:
            raise ValueError(f"the matrix is not symmetric: max |A - A^T| = {asymmetry:.3g} "
                             f"(max |A| = {scale:.3g}); symmetrise it with (A + A.T) / 2")
        super().__init__(matrix.shape[0], matrix.dtype, matrix.device)
        self.matrix = matrix

    def _matmat(self, vectors: Tensor) -> Tensor:
        return self.matrix @ vectors

    def to_dense(self) -> Tensor:
        return self.matrix.clone()


def as_operator(op: LinearOperator | Tensor | np.ndarray) -> LinearOperator:
    """``op`` itself if it is a :class:`LinearOperator`, else a :class:`DenseOperator` of the matrix."""
    if isinstance(op, LinearOperator):
        return op
    if isinstance(op, (Tensor, np.ndarray)):
        return DenseOperator(op)
    raise ValueError(f"expected a LinearOperator or a dense symmetric matrix, got {type(op).__name__}")


class CurvatureOperator(LinearOperator):
    """Base of :class:`HessianOperator` and :class:`GGNOperator`: parameter bookkeeping and data.

    Besides flat vectors, products accept parameter-shaped dicts ``{name: tensor}`` over the
    selected parameters (``param_names``) and return one.  A product is the sample-weighted mean
    over the data of per-batch products (:meth:`ModelFunction.data_mean`); when the data is one
    batch, the per-batch graph is built once and reused by every product.  Subclasses build a
    batch's graph (:meth:`_graph`) and multiply by it (:meth:`_products`).
    """

    cache_graph = True

    def __init__(self, fn: ModelFunction):
        super().__init__(fn.size, fn.dtype, fn.device)
        self._fn = fn
        self.param_names = list(fn.names)
        self.param_shapes = {n: s for n, s in zip(fn.names, fn.shapes)}
        self.meta: dict[str, Any] = {}
        self._cached: tuple[int, Any] | None = None
        data_signature: tuple = ("per batch",)
        if self.cache_graph and fn.single_batch:
            with torch.enable_grad(), fn.evaluating(second_order=True):
                (batch,) = fn.batches()
                self._cached = batch_size(batch), self._graph(batch)
            data_signature = _shapes(batch)
        self.block_products = BlockProducts(problem=(
            type(self).__name__, getattr(self, "backend", None), type(fn.model).__name__, str(fn.device),
            str(fn.dtype), tuple(zip(fn.names, map(tuple, fn.shapes))), data_signature))

    @property
    def function(self) -> ModelFunction:
        """The model, loss and data this operator is the curvature of."""
        return self._fn

    @property
    def num_samples(self) -> int:
        """Samples in the data (over all ranks of the process group)."""
        return int(self._fn.total_samples)

    def flatten(self, tensors: dict[str, Tensor]) -> Tensor:
        """A flat vector from a parameter-shaped dict (keys: exactly ``param_names``)."""
        if set(tensors) != set(self.param_names):
            raise ValueError(f"expected a dict over the parameters {self.param_names}, got keys {list(tensors)}")
        return torch.cat([tensors[n].reshape(-1).to(device=self.device, dtype=self.dtype) for n in self.param_names])

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """A parameter-shaped dict from a flat vector."""
        return dict(zip(self.param_names, self._fn.split(flat)))

    def __matmul__(self, v: Any) -> Any:
        if isinstance(v, dict):
            return self.unflatten(super().__matmul__(self.flatten(v)))
        return super().__matmul__(v)

    def _matmat(self, vectors: Tensor) -> Tensor:
        fn = self._fn
        if self._cached is not None:  # products on the stored graph run no module code: no state to guard
            n, graph = self._cached
            with torch.enable_grad():
                products = self._products(graph, vectors)
            if fn.process_group is None:
                return products
            return fn.sum_over_ranks(products * n) / fn.count_over_ranks(n)
        with torch.enable_grad(), fn.evaluating(second_order=True):
            return fn.data_mean(lambda batch: self._products(self._graph(batch), vectors))

    def _graph(self, batch: Batch) -> Any:
        raise NotImplementedError

    def _products(self, graph: Any, vectors: Tensor) -> Tensor:
        raise NotImplementedError


def _shapes(batch: Batch) -> tuple:
    """The shapes and dtypes of a batch's tensors (what the cost of a product depends on)."""
    tensors = batch.items() if isinstance(batch, Mapping) else enumerate(batch)
    return tuple((k, tuple(t.shape), str(t.dtype)) for k, t in tensors if isinstance(t, Tensor))


class HessianOperator(CurvatureOperator):
    """The Hessian of the sample-weighted mean loss in the selected parameters (see :func:`hessian`)."""

    def __init__(self, fn: ModelFunction, backend: Backend):
        self.backend = backend
        self.cache_graph = backend == "double_backward"
        super().__init__(fn)

    def _graph(self, batch: Batch) -> Any:
        if self.backend == "forward_over_reverse":
            return batch  # nothing to cache: every product is one jvp of the batch gradient
        fn = self._fn
        grads = torch.autograd.grad(fn.batch_loss(fn.params, batch), list(fn.params.values()), create_graph=True,
                                    allow_unused=True, materialize_grads=True)
        return list(grads)

    def _products(self, graph: Any, vectors: Tensor) -> Tensor:
        if self.backend == "forward_over_reverse":
            return self._forward_over_reverse(graph, vectors)
        return self._double_backward(graph, vectors)

    def _double_backward(self, grads: list[Tensor], vectors: Tensor) -> Tensor:
        fn = self._fn
        params = list(fn.params.values())
        live = [i for i, g in enumerate(grads) if g.requires_grad]  # other gradients are constant
        if not live:  # the loss is linear in the parameters
            return torch.zeros_like(vectors)

        def product(block: Tensor, batched: bool) -> Tensor:
            pieces = split_rows(block, fn.shapes, batched)
            hv = torch.autograd.grad([grads[i] for i in live], params, [pieces[i] for i in live],
                                     retain_graph=True, allow_unused=True, is_grads_batched=batched)
            return join_rows(hv, fn.shapes, block.shape[0], block)

        return self.block_products(vectors.T.contiguous(), product).T  # rows: no copy when V = R.T

    def _forward_over_reverse(self, batch: Batch, vectors: Tensor) -> Tensor:
        """``jvp(grad L_b)``; floating targets ride along with explicit zero tangents (this avoids
        torch's immutable ZeroTensor tangent, which the forward derivative of ``mse_loss``'s
        backward writes into)."""
        fn = self._fn
        targets = fn.targets(batch)

        def batch_grad(params: dict[str, Tensor], target: Tensor) -> dict[str, Tensor]:
            return torch.func.grad(lambda p: fn.loss(fn.outputs(p, batch), target))(params)

        primals = {n: p.detach() for n, p in fn.params.items()}
        rng = fn.rng_state()  # every column sees the dropout masks of one forward pass
        columns = []
        for v in vectors.T.contiguous():  # rows: no copy when V = R.T
            fn.restore_rng(rng)
            tangents = dict(zip(fn.names, fn.split(v)))
            if targets.is_floating_point():
                _, hv = torch.func.jvp(batch_grad, (primals, targets), (tangents, torch.zeros_like(targets)))
            else:
                _, hv = torch.func.jvp(lambda p: batch_grad(p, targets), (primals,), (tangents,))
            columns.append(fn.join([hv[n] for n in fn.names]))
        return torch.stack(columns).T


def jacobian_graph(fn: ModelFunction, batch: Batch) -> tuple[Tensor, Tensor, list[Tensor]]:
    """The outputs ``f`` on ``batch``, a dummy ``u`` shaped like them and ``J^T u`` with its graph (one
    tensor per parameter).  ``J^T u`` is linear in ``u``, so a backward pass through it with the
    vector ``v`` as cotangent gives ``J v`` (the double-backward trick for forward products), and a
    backward pass through ``f`` gives ``J^T w``."""
    params = list(fn.params.values())
    out = fn.outputs(fn.params, batch)
    dummy = torch.zeros_like(out, requires_grad=True)
    jt_dummy = torch.autograd.grad(out, params, dummy, create_graph=True, allow_unused=True, materialize_grads=True)
    return out, dummy, list(jt_dummy)


class GGNOperator(CurvatureOperator):
    """The generalised Gauss-Newton matrix ``J^T H_out J`` (see :func:`ggn`)."""

    def _graph(self, batch: Batch) -> tuple:
        """Graphs for ``J^T u`` and ``J v`` (:func:`jacobian_graph`) and for ``grad_f L``."""
        fn = self._fn
        out, dummy, jt_dummy = jacobian_graph(fn, batch)
        out_leaf = out.detach().requires_grad_(True)
        grad_out = torch.autograd.grad(fn.loss(out_leaf, fn.targets(batch)), out_leaf, create_graph=True)[0]
        return out, dummy, jt_dummy, out_leaf, grad_out

    def _products(self, graphs: tuple, vectors: Tensor) -> Tensor:
        fn = self._fn
        out, dummy, jt_dummy, out_leaf, grad_out = graphs
        params = list(fn.params.values())
        live = [i for i, g in enumerate(jt_dummy) if g.requires_grad]  # others: unused parameters

        def product(block: Tensor, batched: bool) -> Tensor:
            pieces = split_rows(block, fn.shapes, batched)
            jv = torch.autograd.grad([jt_dummy[i] for i in live], dummy, [pieces[i] for i in live],
                                     retain_graph=True, allow_unused=True, materialize_grads=True,
                                     is_grads_batched=batched)[0]
            if grad_out.requires_grad:
                hjv = torch.autograd.grad(grad_out, out_leaf, jv, retain_graph=True, allow_unused=True,
                                          materialize_grads=True, is_grads_batched=batched)[0]
            else:  # the loss is linear in the outputs
                hjv = torch.zeros_like(jv)
            jthjv = torch.autograd.grad(out, params, hjv, retain_graph=True, allow_unused=True,
                                        is_grads_batched=batched)
            return join_rows(jthjv, fn.shapes, block.shape[0], block)

        return self.block_products(vectors.T.contiguous(), product).T  # rows: no copy when V = R.T


@analyzer
def hessian(model: nn.Module, loss_fn: LossFn, data: Data, *, params: ParamSpec = None, mode: Mode = "eval",
            dtype: torch.dtype | None = None, device: str | torch.device | None = None,
            backend: Backend = "double_backward", process_group: Any = None,
            output: OutputFn | None = None) -> HessianOperator:
    """The Hessian ``H = d^2 L / d theta^2`` of the mean loss over ``data`` as a lazy operator.

    ``L = sum_b n_b loss_fn(model(x_b), y_b) / N`` (batch means weighted by batch sizes).
    ``params`` selects parameters (:func:`theorylab._params.select_parameters`; default all that
    require grad); ``mode`` is the train/eval mode used ("eval", "train" or "keep"); ``dtype`` and
    ``device`` choose where to compute, on copies (default: those of the first selected
    parameter).  ``backend="double_backward"`` differentiates the gradient graph once more
    (Pearlmutter 1994), the graph being cached when ``data`` is one batch;
    ``"forward_over_reverse"`` uses ``torch.func.jvp(torch.func.grad(L))``.  ``process_group``: a
    ``torch.distributed`` group over which ``data`` is sharded; products are all-reduced so every
    rank gets the full-data Hessian (all ranks must call every product together).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    fn = ModelFunction(model, loss_fn, data, params=params, mode=mode, dtype=dtype, device=device,
                       process_group=process_group, output=output)
    return HessianOperator(fn, backend)


@analyzer
def ggn(model: nn.Module, loss_fn: LossFn, data: Data, *, params: ParamSpec = None, mode: Mode = "eval",
        dtype: torch.dtype | None = None, device: str | torch.device | None = None,
        process_group: Any = None, output: OutputFn | None = None) -> GGNOperator:
    """The generalised Gauss-Newton matrix ``G = sum_b n_b J_b^T H_b J_b / N`` as a lazy operator.

    ``J_b`` is the Jacobian of the model outputs on batch ``b`` in the selected parameters and
    ``H_b`` the Hessian of ``loss_fn`` in those outputs (Schraudolph 2002; Martens 2020).
    ``G`` is positive semi-definite when the loss is convex in the outputs (MSE, cross-entropy)
    and equals the Hessian when the model is linear in its parameters.  Products use a Jacobian-
    vector product (double backward through ``J^T u``), an output-space Hessian-vector product and
    a vector-Jacobian product.  Options as in :func:`hessian`.
    """
    fn = ModelFunction(model, loss_fn, data, params=params, mode=mode, dtype=dtype, device=device,
                       process_group=process_group, output=output)
    return GGNOperator(fn)
