"""Input-gradient attributions and the adversarial perturbations of projected gradient descent.

* **Input gradients** (Simonyan, Vedaldi & Zisserman 2014, "Deep inside convolutional networks"):
  ``d loss(f(x_i), y_i) / d x_i`` for every example; Shah, Tamuly, Raghunathan, Jain & Netrapalli 2021
  ("Do input gradients highlight discriminative features?", NeurIPS) ask which part of the input they
  weigh: :func:`attribution_share` is the share of ``|gradient|`` that falls in a region (a mask).
* **PGD** (Madry, Makelov, Schmidt, Tsipras & Vladu 2018, "Towards deep learning models resistant to
  adversarial attacks", ICLR, Eq. 2-3): ``delta <- clip_eps(delta + alpha sign(grad_delta loss))``
  from ``delta = 0`` for ``steps`` steps, the l-infinity ball of radius ``epsilon``.  Adversarial
  training minimises the loss at ``x + delta``.  For a linear model the worst case is
  ``epsilon sign(...)`` in closed form, which the tests check.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from theorylab._state import Mode, preserved
from theorylab.adapters import OutputFn
from theorylab.analyzer import analyzer
from theorylab.batches import Data, parts
from theorylab.functional import ModelFunction

LossFn = Callable[[Tensor, Tensor], Tensor]


@analyzer
def input_gradients(model: nn.Module, loss_fn: LossFn, data: Data, *, mode: Mode = "eval",
                    dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                    output: OutputFn | None = None) -> Tensor:
    """``(N, *input shape)``: the gradient of each example's loss ``loss_fn(f(x_i), y_i)`` in its input ``x_i``.

    ``loss_fn`` is the batch mean; it is scaled by the batch size so every row is one example's gradient
    (examples must be independent: no BatchNorm in train mode).
    """
    fn = ModelFunction(model, loss_fn, data, mode=mode, dtype=dtype, device=device, output=output, variables=False)
    rows = []
    with fn.evaluating(), torch.enable_grad():
        fn.check_examples_independent()
        for batch in fn.batches():
            given = parts(batch)
            if len(given.args) != 1 or given.kwargs or not given.args[0].is_floating_point():
                raise ValueError("input gradients need the model's input as one floating-point tensor "
                                 "(token ids, several inputs or keyword inputs have no input gradient here)")
            inputs, targets = given.args[0].detach().requires_grad_(True), fn.targets(batch)
            loss = fn.loss(fn.outputs({}, (inputs, targets)), targets) * len(targets)
            rows.append(torch.autograd.grad(loss, inputs)[0].detach().cpu())
    return torch.cat(rows)


def attribution_share(gradients: Tensor, region: Tensor) -> Tensor:
    """Per example, the share of ``sum |gradient|`` inside ``region`` (a boolean mask per example, or one for all)."""
    magnitude = gradients.abs().reshape(len(gradients), -1)
    mask = region.reshape(len(gradients) if region.dim() == gradients.dim() else 1, -1).to(magnitude.dtype)
    if mask.shape[1] != magnitude.shape[1]:
        raise ValueError(f"region must have the input's shape, got {tuple(region.shape)} for {tuple(gradients.shape)}")
    total = magnitude.sum(1)
    return torch.where(total > 0, (magnitude * mask).sum(1) / total.clamp_min(1e-300), torch.zeros_like(total))


def pgd_perturbation(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, *, epsilon: float,
                     steps: int, step_size: float | None = None) -> Tensor:
    """The l-infinity PGD perturbation ``delta`` (``|delta| <= epsilon``) that raises ``loss_fn`` at ``inputs``.

    ``step_size`` defaults to ``2.5 epsilon / steps`` (Madry et al. 2018).  The model is evaluated as it is
    (its mode is the caller's: attack a model in eval mode) and left exactly as it was.
    """
    if not epsilon >= 0 or steps < 1:
        raise ValueError(f"need epsilon >= 0 and steps >= 1, got {epsilon}, {steps}")
    alpha = 2.5 * epsilon / steps if step_size is None else step_size
    delta = torch.zeros_like(inputs)
    with preserved(model, mode="keep"), torch.enable_grad():
        for _ in range(steps):
            delta.requires_grad_(True)
            grad, = torch.autograd.grad(loss_fn(model(inputs + delta), targets), delta)
            delta = (delta.detach() + alpha * grad.sign()).clamp(-epsilon, epsilon)
    return delta.detach()
