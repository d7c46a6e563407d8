"""Published scaling-law fits that claims are compared with.

The laws themselves are fitted with :mod:`theorylab.fits`; here are the numbers papers report.
"""
from __future__ import annotations


def epoch_chinchilla_fit() -> dict[str, object]:
    """Besiroglu, Erdil, Barnett & You 2024 ("Chinchilla scaling: a replication attempt", Table 1 and
    Sec. 3), approach 3 of Hoffmann et al. 2022 refitted on the 240 points of their Figure 4 with
    Huber(1e-3) on log-loss *summed* over points: the objective, the exponents, ``a = beta/(alpha+beta)``
    and 95% bootstrap intervals (4,000 resamples).  Besiroglu et al. trace Hoffmann et al.'s different
    exponents to the fitting procedure; ``averaged_*`` are the exponents that the published optimiser
    (scipy L-BFGS-B with finite-difference gradients) stops at on this data when the Huber loss is
    *averaged* over points, as first measured with theorylab (not numbers from the paper)."""
    return {"objective": 1.01827402e-3, "alpha": 0.3478, "beta": 0.3658, "a": 0.513,
            "alpha_ci": (0.317, 0.373), "beta_ci": (0.331, 0.415),
            "averaged_alpha": 0.382, "averaged_beta": 0.312}
