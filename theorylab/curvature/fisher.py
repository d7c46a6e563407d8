"""Fisher information matrices of a model as lazy operators: expected, Monte-Carlo and empirical.

Read the loss as a negative log-likelihood, ``loss_fn(f, y) = mean_i -log p(y_i | f_i)`` up to
constants, with ``f_i = f(x_i; theta)`` the model output for sample ``i``.  Then, over data of ``N``
samples (Martens 2020, "New insights and perspectives on the natural gradient method", Sec. 9;
Kunstner, Hennig & Balles 2019, "Limitations of the empirical Fisher approximation"):

* the **Fisher** ``F = (1/N) sum_i E_{y ~ p(y | f_i)} [g_i(y) g_i(y)^T]``, ``g_i(y) = d(-log p(y|f_i))/d theta
  = J_i^T r_i(y)``, is ``(1/N) sum_i J_i^T Lambda_i J_i`` with the output-space Fisher
  ``Lambda_i = E_y[r_i r_i^T]``.  For the likelihoods of the two usual losses ``Lambda_i`` is the
  Hessian of the loss in the outputs, so the **Fisher equals the generalised Gauss-Newton matrix**
  (Martens 2020, Sec. 9.2):

  - ``"categorical"`` (``nn.CrossEntropyLoss``, softmax probabilities ``p_i``):
    ``Lambda_i = diag(p_i) - p_i p_i^T``;
  - ``"gaussian"`` (``nn.MSELoss``, the mean over the ``k`` output entries, which is the negative
    log-likelihood of ``N(f_i, (k/2) I)`` up to a constant): ``Lambda_i = (2/k) I``.

  :func:`fisher` with ``num_draws=None`` uses these closed forms; with ``num_draws=M`` it is the
  **Monte-Carlo Fisher**: ``Lambda_i`` is replaced by ``(1/M) sum_m r_i(y_im) r_i(y_im)^T`` for
  labels ``y_im`` drawn from the model's own predictive distribution, ``r_i`` the gradient of
  ``loss_fn`` in the outputs (autograd), an unbiased estimate of ``F`` whose error shrinks like
  ``M^{-1/2}``.  The labels are drawn once, on the CPU, from ``seed`` (and the batch order), so the
  operator is one fixed symmetric matrix whatever the number of products.
* the **empirical Fisher** (uncentred gradient covariance) ``F_emp = (1/N) sum_i g_i g_i^T`` with
  the observed labels, ``g_i`` the gradient of example ``i``'s loss: :func:`empirical_fisher`,
  from per-example gradients (any loss, any model with independent examples).  It is not the
  Fisher: the two agree only near an optimum of a well-specified model (Kunstner et al. 2019).

Products are exact.  Fisher products use a Jacobian-vector product (double backward through
``J^T u``), the output-space matrix and a vector-Jacobian product; empirical Fisher products use the
``(n_b, P)`` per-example gradients of each batch (built once and kept when the data is one batch).
Data semantics, ``params``, ``mode``, ``dtype``, ``device``, ``process_group`` and ``output`` are those
of :func:`theorylab.curvature.hessian`.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from theorylab._params import ParamSpec
from theorylab._state import Mode
from theorylab.adapters import OutputFn
from theorylab.analyzer import analyzer
from theorylab.batches import Batch, Data, batch_size, slice_batch
from theorylab.curvature.operators import CurvatureOperator, LossFn, jacobian_graph
from theorylab.functional import ModelFunction

Likelihood = Literal["categorical", "gaussian"]
LIKELIHOODS: tuple[str, ...] = ("categorical", "gaussian")


def infer_likelihood(loss_fn: Any, likelihood: str | None) -> str:
    """The likelihood ``loss_fn`` is the negative log of: given, or read off a PyTorch loss module."""
    if likelihood is not None:
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS} or None, got {likelihood!r}")
        return likelihood
    if isinstance(loss_fn, nn.CrossEntropyLoss):
        if loss_fn.reduction != "mean" or loss_fn.weight is not None or loss_fn.label_smoothing != 0:
            raise ValueError("the Fisher needs nn.CrossEntropyLoss() with reduction='mean', no class weights and "
                             "no label smoothing (the negative log-likelihood of a categorical distribution)")
        return "categorical"
    if isinstance(loss_fn, nn.MSELoss):
        if loss_fn.reduction != "mean":
            raise ValueError("the Fisher needs nn.MSELoss() with reduction='mean'")
        return "gaussian"
    name = getattr(loss_fn, "__name__", type(loss_fn).__name__)
    raise ValueError(f"cannot tell which likelihood {name} is the negative log of; pass "
                     "likelihood='categorical' (softmax cross-entropy, mean over samples) or 'gaussian' "
                     "(squared error, mean over all output entries)")


def rank_of(process_group: Any) -> int:
    if process_group is None:
        return 0
    import torch.distributed as dist

    return dist.get_rank(process_group)


def decomposes_over_samples(loss_fn: Any) -> bool:
    """True for losses that are the mean over samples of a term of each sample's output row alone
    (``nn.CrossEntropyLoss`` without class weights, ``nn.MSELoss``, mean reductions), so that ``n``
    times the batch loss's output gradient holds the per-example output gradients."""
    if isinstance(loss_fn, nn.CrossEntropyLoss):
        return loss_fn.reduction == "mean" and loss_fn.weight is None
    return isinstance(loss_fn, nn.MSELoss) and loss_fn.reduction == "mean"


def sample_gradients(fn: ModelFunction, out: Tensor, labels: Tensor, scale: float) -> Tensor:
    """``scale * n`` times the output gradient of the batch loss at ``labels``: row ``i`` is ``scale``
    times the gradient of sample ``i``'s loss in its outputs (for losses that decompose over samples)."""
    leaf = out.detach().requires_grad_(True)
    with torch.enable_grad():
        return torch.autograd.grad(fn.loss(leaf, labels), leaf)[0] * (scale * out.shape[0])


def rank_one_products(gradients: Tensor, u: Tensor) -> Tensor:
    """``sum_m s_m (s_m . u_i)`` row by row, for ``gradients`` ``s`` of shape ``(M, n, ...)`` and ``u`` ``(n, ...)``."""
    weights = (gradients * u).flatten(2).sum(dim=2)  # (M, n): s_mi . u_i
    return (gradients * weights.view(*weights.shape, *([1] * (u.dim() - 1)))).sum(dim=0)


class OutputSpaceOperator(CurvatureOperator):
    """``(1/N) sum_b n_b J_b^T B_b J_b`` for an output-space matrix ``B_b`` per batch.

    Subclasses give ``B_b`` by :meth:`_output_matrix` (whatever it needs, computed once per batch)
    and :meth:`_output_products` (``B_b U`` for a ``(n_b, ...)`` output-shaped ``U``).
    """

    def _graph(self, batch: Batch) -> tuple:
        out, dummy, jt_dummy = jacobian_graph(self._fn, batch)
        return out, dummy, jt_dummy, self._output_matrix(out.detach(), batch)

    def _products(self, graph: tuple, vectors: Tensor) -> Tensor:
        fn = self._fn
        out, dummy, jt_dummy, matrix = graph
        params = list(fn.params.values())
        live = [i for i, g in enumerate(jt_dummy) if g.requires_grad]  # others: parameters the output ignores
        columns = []
        for v in vectors.T.contiguous():
            if not live:
                columns.append(torch.zeros_like(v))
                continue
            pieces = fn.split(v)
            jv = torch.autograd.grad([jt_dummy[i] for i in live], dummy, [pieces[i] for i in live],
                                     retain_graph=True, materialize_grads=True)[0]
            columns.append(fn.join(list(torch.autograd.grad(out, params, self._output_products(matrix, jv),
                                                            retain_graph=True, allow_unused=True))))
        return torch.stack(columns, dim=1)

    def _output_matrix(self, out: Tensor, batch: Batch) -> Any:
        raise NotImplementedError

    def _output_products(self, matrix: Any, u: Tensor) -> Tensor:
        raise NotImplementedError


class FisherOperator(OutputSpaceOperator):
    """The Fisher information of the model's predictive distribution (see :func:`fisher`)."""

    def __init__(self, fn: ModelFunction, likelihood: str, num_draws: int | None, seed: int):
        self.likelihood, self.num_draws, self.seed = likelihood, num_draws, seed
        self._generator = self._fresh_generator(fn)
        super().__init__(fn)

    def _fresh_generator(self, fn: ModelFunction) -> torch.Generator:
        """The label sampler, restarted for every pass over the data (ranks draw different labels)."""
        return torch.Generator().manual_seed(int(self.seed) + 1_000_003 * rank_of(fn.process_group))

    def _matmat(self, vectors: Tensor) -> Tensor:
        self._generator = self._fresh_generator(self._fn)
        return super()._matmat(vectors)

    def _output_matrix(self, out: Tensor, batch: Batch) -> Any:
        n = batch_size(batch)
        if out.shape[0] != n:
            raise ValueError(f"the Fisher needs one output row per sample: outputs {tuple(out.shape)} for {n} samples")
        if self.likelihood == "categorical" and out.dim() != 2:
            raise ValueError(f"the categorical Fisher needs (samples, classes) logits, got shape {tuple(out.shape)}")
        if self.num_draws is None:
            if self.likelihood == "categorical":
                return torch.softmax(out, dim=1), n  # Lambda_i = diag(p_i) - p_i p_i^T
            return 2.0 / out[0].numel(), n  # Lambda_i = (2/k) I
        return self._sampled_gradients(out, n)

    def _sampled_gradients(self, out: Tensor, n: int) -> Tensor:
        """``(M, n, ...)``: per-sample output gradients at sampled labels over ``sqrt(n M)``, so that
        ``sum_m s_m s_m^T`` is the batch's Monte-Carlo ``blockdiag(Lambda_i) / n``."""
        fn, count = self._fn, self.num_draws
        if self.likelihood == "categorical":
            probs = torch.softmax(out.detach().to(torch.float64).cpu(), dim=1)
            labels = torch.multinomial(probs, count, replacement=True, generator=self._generator).T.to(out.device)
        else:
            sigma = (out[0].numel() / 2.0) ** 0.5  # N(f, (k/2) I): the likelihood of nn.MSELoss()
            noise = torch.randn((count, *out.shape), generator=self._generator, dtype=torch.float64)
            labels = out.detach() + sigma * noise.to(device=out.device, dtype=out.dtype)
        return torch.stack([sample_gradients(fn, out, label, (n * count) ** -0.5) for label in labels])

    def _output_products(self, matrix: Any, u: Tensor) -> Tensor:
        """``B u`` with ``B = blockdiag(Lambda_i) / n`` for the batch's ``n`` samples."""
        if self.num_draws is not None:  # matrix: the scaled gradients s_m, (M, n, ...)
            return rank_one_products(matrix, u)
        scale, n = matrix
        if self.likelihood == "categorical":  # scale: the probabilities p, (n, C)
            return (scale * u - scale * (scale * u).sum(dim=1, keepdim=True)) / n
        return u * (scale / n)


class EmpiricalFisherOperator(OutputSpaceOperator):
    """``(1/N) sum_i g_i g_i^T = (1/N) sum_i J_i^T r_i r_i^T J_i`` with ``r_i`` the output gradient of
    sample ``i``'s loss at its label, for losses that decompose over samples (see :func:`empirical_fisher`)."""

    def __init__(self, fn: ModelFunction):
        with fn.evaluating():  # the mode of the products, not the model's own
            fn.check_examples_independent()
        super().__init__(fn)

    def _output_matrix(self, out: Tensor, batch: Batch) -> Tensor:
        n = batch_size(batch)
        if out.shape[0] != n:
            raise ValueError(f"the empirical Fisher needs one output row per sample: outputs {tuple(out.shape)} for "
                             f"{n} samples")
        targets = self._fn.targets(batch)
        ignored = getattr(self._fn.loss_fn, "ignore_index", None)
        if ignored is not None and not targets.is_floating_point() and bool((targets == ignored).any()):
            raise ValueError(f"labels equal to ignore_index={ignored} have no loss of their own; drop those samples")
        return sample_gradients(self._fn, out, targets, n ** -0.5).unsqueeze(0)

    def _output_products(self, matrix: Tensor, u: Tensor) -> Tensor:
        return rank_one_products(matrix, u)


class PerExampleEmpiricalFisherOperator(CurvatureOperator):
    """``(1/N) sum_i g_i g_i^T`` from per-example gradients, for any loss (see :func:`empirical_fisher`)."""

    def __init__(self, fn: ModelFunction, chunk_size: int | None):
        self.chunk_size = chunk_size
        with fn.evaluating():  # the mode of the products, not the model's own
            fn.check_examples_independent()
        super().__init__(fn)

    def _graph(self, batch: Batch) -> Tensor:
        """The ``(n_b, P)`` per-example gradients of the batch, ``chunk_size`` examples at a time."""
        fn, n = self._fn, batch_size(batch)
        step = n if self.chunk_size is None else self.chunk_size
        rows = [torch.cat(fn.per_example_gradients(slice_batch(batch, slice(s, s + step))), dim=1)
                for s in range(0, n, step)]
        return torch.cat(rows).detach()

    def _products(self, gradients: Tensor, vectors: Tensor) -> Tensor:
        return gradients.T @ (gradients @ vectors) / gradients.shape[0]


@analyzer
def fisher(model: nn.Module, loss_fn: LossFn, data: Data, *, likelihood: Likelihood | None = None,
           num_draws: int | None = None, seed: int = 0, params: ParamSpec = None, mode: Mode = "eval",
           dtype: torch.dtype | None = None, device: str | torch.device | None = None, process_group: Any = None,
           output: OutputFn | None = None) -> FisherOperator:
    """The Fisher information ``F = (1/N) sum_i J_i^T Lambda_i J_i`` as a lazy operator.

    ``likelihood``: "categorical" or "gaussian" (default: read off ``nn.CrossEntropyLoss`` /
    ``nn.MSELoss``).  ``num_draws=None``: the exact expectation over labels (closed-form
    ``Lambda_i``, equal to the GGN for these losses); ``num_draws=M``: the Monte-Carlo Fisher with
    ``M`` labels per input drawn from the model (from ``seed``, on the CPU; fixed for the operator's
    lifetime).  Other options as in :func:`theorylab.curvature.hessian`.  See the module docstring.
    """
    likelihood = infer_likelihood(loss_fn, likelihood)
    if num_draws is not None and (isinstance(num_draws, bool) or not isinstance(num_draws, int)
                                    or num_draws < 1):
        raise ValueError(f"num_draws must be a positive integer (labels per input) or None, got {num_draws!r}")
    fn = ModelFunction(model, loss_fn, data, params=params, mode=mode, dtype=dtype, device=device,
                       process_group=process_group, output=output)
    op = FisherOperator(fn, likelihood, num_draws, seed)
    op.meta.update(likelihood=likelihood, num_draws=num_draws)
    return op


@analyzer
def empirical_fisher(model: nn.Module, loss_fn: LossFn, data: Data, *, chunk_size: int | None = None,
                     params: ParamSpec = None, mode: Mode = "eval", dtype: torch.dtype | None = None,
                     device: str | torch.device | None = None, process_group: Any = None,
                     output: OutputFn | None = None) -> CurvatureOperator:
    """The empirical Fisher (uncentred gradient covariance) ``(1/N) sum_i g_i g_i^T`` as a lazy operator.

    ``g_i`` is the gradient of example ``i``'s loss ``loss_fn(f(x_i), y_i)`` with its observed label.
    For ``nn.CrossEntropyLoss`` (no class weights) and ``nn.MSELoss`` ``g_i = J_i^T r_i`` with ``r_i``
    the output gradient, and a product is a Jacobian-vector product, a rank-one output-space product
    and a vector-Jacobian product (memory of one backward pass).  Any other loss uses per-example
    gradients (``torch.func.vmap``, or a loop where vmap cannot batch the model), ``chunk_size``
    examples at a time (default: a whole batch), memory ``n_b * P`` per batch.  Undefined where
    BatchNorm runs in train mode (examples are coupled): a clear error.  Other options as in
    :func:`theorylab.curvature.hessian`.
    """
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    fn = ModelFunction(model, loss_fn, data, params=params, mode=mode, dtype=dtype, device=device,
                       process_group=process_group, output=output)
    if decomposes_over_samples(loss_fn):
        return EmpiricalFisherOperator(fn)
    return PerExampleEmpiricalFisherOperator(fn, chunk_size)
