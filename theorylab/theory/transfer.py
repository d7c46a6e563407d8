"""The transfer measure bounded through the classifier head's Hessian and gradient alignment.

Hemati, Zhang, Estiri & Chen 2023 ("Understanding Hessian alignment for domain generalization", ICCV, Sec. 3)
bound the transfer measure of Zhang, Zhao, Yu & Poupart 2021 (NeurIPS), ``T_Gamma(S || T) = sup_{theta in
Gamma} [L_T(theta) - L_T*] - [L_S(theta) - L_S*]`` with ``L_D* = inf_Gamma L_D``, over the ball ``Gamma`` of
radius ``delta`` around the source's classifier head ``theta*``.  The second-order Taylor expansion of each
domain's loss around ``theta*`` gives ``L_T(theta) - L_S(theta) = L_T(theta*) - L_S(theta*) + (g_T - g_S)^T d +
d^T (H_T - H_S) d / 2`` with ``d = theta - theta*``, ``||d|| <= delta``; Cauchy-Schwarz and the spectral norm give

    ``T_Gamma(S || T) <= [L_T(theta*) - L_T*] - [L_S(theta*) - L_S*] + delta ||g_T - g_S|| +
    delta^2 / 2 ||H_T - H_S||_2``,

so the better the two domains' head Hessians (and gradients) align, the smaller the transfer measure.  The bound
neglects the third-order remainder of the expansion.
"""
from __future__ import annotations

import math


def hessian_alignment_bound(radius: float, hessian_gap: float, gradient_gap: float, target_excess: float,
                            source_excess: float = 0.0) -> float:
    """The second-order bound on the transfer measure of Hemati et al. 2023 (module docstring).

    ``hessian_gap = ||H_T - H_S||_2``, ``gradient_gap = ||g_T - g_S||``, ``target_excess = L_T(theta*) - L_T*`` and
    ``source_excess = L_S(theta*) - L_S*`` (0 at the source's minimiser), all at the centre ``theta*`` of the
    ball of ``radius``.
    """
    for name, value in (("radius", radius), ("hessian_gap", hessian_gap), ("gradient_gap", gradient_gap)):
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    for name, value in (("target_excess", target_excess), ("source_excess", source_excess)):
        if not math.isfinite(value):  # excesses are >= 0 up to the roundoff of the infima
            raise ValueError(f"{name} must be finite, got {value!r}")
    return target_excess - source_excess + radius * gradient_gap + radius ** 2 / 2 * hessian_gap
