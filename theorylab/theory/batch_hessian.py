"""The top eigenvalue of a mini-batch Hessian (Granziol, Zohren & Roberts 2022, "Learning rates as a
function of batch size: a random matrix theory approach to neural network training", JMLR 23(173), Sec. 4).

The batch-B Hessian is modelled as the full Hessian plus a random perturbation whose entries have
variance proportional to ``1/B - 1/N`` (sampling ``B`` of ``N`` examples without replacement).  Spiked
random matrix theory puts its top eigenvalue above the full one by an excess that decays like
``(1/B - 1/N)^p``: ``p = 1`` while the top eigenvalue stands out of the noise bulk
(``lambda_1 + P sigma^2 / (B lambda_1)``), ``p = 1/2`` at the bulk edge (``2 sigma sqrt(P / B)``).
"""
from __future__ import annotations


def batch_hessian_excess_exponents() -> tuple[float, float]:
    """``(1/2, 1)``: the range of the exponent ``p`` of the excess ``lambda_1(H_B) - lambda_1(H) ~ (1/B - 1/N)^p``."""
    return 0.5, 1.0
