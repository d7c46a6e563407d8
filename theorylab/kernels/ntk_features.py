"""What one block of inputs contributes to the empirical NTK, and how two blocks are contracted.

The NTK of a set of parameters is ``Theta(x_n, x_m)_{ij} = <J_i(x_n), J_j(x_m)>`` with ``J_i(x)`` the
gradient of output ``i`` with respect to those parameters.  A block of ``A`` inputs is summarised
by *features*, from which the kernel between two blocks follows by contraction, exactly:

* :class:`JacobianFeature`: the per-example Jacobian ``J`` (A, O, P) itself; the kernel is the
  product ``(A O, P) (P, B O)``.
* :class:`KroneckerFeature`: a layer ``y_t = s W a_t + s_b b`` used once in the forward pass, with
  ``a_t`` its input at position ``t`` (a token, or an image patch: the unfolded input of a
  convolution) and ``g_{i,t} = d f_i / d y_t`` the gradient of output ``i`` at the layer's output.
  Then ``J_i^W(x) = s sum_t g_{i,t} a_t^T`` and

      <J_i^W(x_n), J_j^W(x_m)> = s^2 sum_{t,u} (g_{n,i,t} . g_{m,j,u}) (a_{n,t} . a_{m,u}),
      <J_i^b(x_n), J_j^b(x_m)> = s_b^2 (sum_t g_{n,i,t}) . (sum_u g_{m,j,u}),

  so the layer's kernel is an elementwise product of the input Gram and the output-gradient Gram
  (for one position per example, ``(A A^T) o (G G^T)``), never forming the weight Jacobian.
  This is the per-layer Kronecker structure of the Jacobian behind K-FAC (Martens & Grosse 2015,
  "Optimizing neural networks with Kronecker-factored approximate curvature") and the "structured
  derivatives" of Novak, Sohl-Dickstein & Schoenholz 2022 ("Fast finite width neural tangent
  kernel"); for a convolution the positions are the patches of its unfolded input (Grosse & Martens
  2016, "A Kronecker-factored approximate Fisher matrix for convolution layers").

:func:`prefers_kronecker` chooses, per layer, whichever of the two costs fewer operations per pair of
examples (the Kronecker form costs ``T^2 (k + O d)`` against ``O d k`` for the Jacobian: for many
positions ``T`` the Jacobian, formed from the same ``a`` and ``g`` by :func:`layer_feature`, is cheaper).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class JacobianFeature:
    """Per-example Jacobians ``(A, O, P_k)`` of some parameters, one tensor per parameter."""

    jacobians: list[Tensor]

    def trace(self, other: "JacobianFeature") -> Tensor:
        """``sum_i <J_i(x_n), J_i(x_m)>``, (A, B): one product per parameter over (output, entry) pairs."""
        n_a, n_b = self.jacobians[0].shape[0], other.jacobians[0].shape[0]
        return sum(a.reshape(n_a, -1) @ b.reshape(n_b, -1).T for a, b in zip(self.jacobians, other.jacobians))

    def blocks(self, other: "JacobianFeature") -> Tensor:
        """``<J_i(x_n), J_j(x_m)>``, (A, B, O, O)."""
        n_a, n_out, _ = self.jacobians[0].shape
        n_b = other.jacobians[0].shape[0]
        k = sum(a.reshape(n_a * n_out, -1) @ b.reshape(n_b * n_out, -1).T
                for a, b in zip(self.jacobians, other.jacobians))
        return k.view(n_a, n_out, n_b, n_out).permute(0, 2, 1, 3)


@dataclass(frozen=True)
class KroneckerFeature:
    """A once-used layer's inputs ``a`` (A, T, k) and output gradients ``g`` (A, O, T, d).

    ``weight_scale`` ``s`` and ``bias_scale`` ``s_b`` (0: no bias, or bias not selected) as in the
    module docstring.  Weight and bias together give, with ``G`` the output-gradient Gram,

        Theta(x_n, x_m)_{ij} = sum_{t,u} (g_{n,i,t} . g_{m,j,u}) (s^2 a_{n,t} . a_{m,u} + s_b^2).
    """

    inputs: Tensor
    grads: Tensor
    weight_scale: float
    bias_scale: float

    def _factor(self, other: "KroneckerFeature") -> Tensor:
        """``s^2 a_{n,t} . a_{m,u} + s_b^2`` as (A, T, B, U)."""
        (n_a, t, k), (n_b, u, _) = self.inputs.shape, other.inputs.shape
        gram = self.inputs.reshape(n_a * t, k) @ other.inputs.reshape(n_b * u, k).T
        return gram.mul_(self.weight_scale ** 2).add_(self.bias_scale ** 2).view(n_a, t, n_b, u)

    def trace(self, other: "KroneckerFeature") -> Tensor:
        n_a, n_out, t, d = self.grads.shape
        n_b, _, u, _ = other.grads.shape
        # sum_i g_{n,i,t} . g_{m,i,u}: rows (n, t), columns (m, u)
        gg = (self.grads.transpose(1, 2).reshape(n_a * t, n_out * d)
              @ other.grads.transpose(1, 2).reshape(n_b * u, n_out * d).T)
        if t == u == 1:
            return gg.mul_(self._factor(other).view(n_a, n_b))
        return (gg.view(n_a, t, n_b, u) * self._factor(other)).sum((1, 3))

    def blocks(self, other: "KroneckerFeature") -> Tensor:
        n_a, n_out, t, d = self.grads.shape
        n_b, _, u, _ = other.grads.shape
        gg = self.grads.reshape(-1, d) @ other.grads.reshape(-1, d).T  # rows (n, i, t), columns (m, j, u)
        if t == u == 1:
            kernel = gg.view(n_a, n_out, n_b, n_out).mul_(self._factor(other).view(n_a, 1, n_b, 1))
        else:
            kernel = (gg.view(n_a, n_out, t, n_b, n_out, u) * self._factor(other)[:, None, :, :, None, :]).sum((2, 5))
        return kernel.permute(0, 2, 1, 3)


Feature = JacobianFeature | KroneckerFeature


def prefers_kronecker(positions: int, fan_in: int, fan_out: int, num_outputs: int, *, blocks: bool) -> bool:
    """Whether the Kronecker form costs fewer operations per pair of examples than the Jacobian.

    ``T^2 (k + O' d)`` against ``O' d k`` with ``O' = O`` for the trace and ``O^2`` for the blocks.
    """
    paired = num_outputs * num_outputs if blocks else num_outputs
    return positions * positions * (fan_in + paired * fan_out) <= paired * fan_out * fan_in


def layer_feature(inputs: Tensor | None, grads: Tensor, weight_scale: float, bias_scale: float, *,
                  kronecker: bool) -> Feature:
    """The feature of a once-used layer from its inputs ``a`` (A, T, k) (None: weight not selected)
    and output gradients ``g`` (A, O, T, d): Kronecker, or the Jacobian formed from them."""
    if inputs is None:  # bias only: its Jacobian (A, O, d)
        return JacobianFeature([bias_scale * grads.sum(2)])
    if kronecker:
        return KroneckerFeature(inputs, grads, weight_scale, bias_scale)
    n_a, n_out, _, d = grads.shape
    weight = weight_scale * torch.einsum("aitd,atk->aidk", grads, inputs).reshape(n_a, n_out, d * inputs.shape[2])
    return JacobianFeature([weight] + ([bias_scale * grads.sum(2)] if bias_scale else []))


def contract(left: list[Feature], right: list[Feature], *, blocks: bool) -> Tensor:
    """The kernel between two blocks: the sum over features of their contractions (trace or blocks)."""
    total: Tensor | None = None
    for a, b in zip(left, right):
        term = a.blocks(b) if blocks else a.trace(b)
        total = term if total is None else total.add_(term)
    assert total is not None, "no features to contract"
    return total
