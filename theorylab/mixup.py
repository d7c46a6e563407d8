"""Mixup (Zhang, Cisse, Dauphin & Lopez-Paz 2018, "mixup: beyond empirical risk minimization", ICLR) and the
last-layer geometry of mixed inputs (Fisher, Meng & Papyan 2024, "Pushing boundaries: mixup's influence on
neural collapse", ICLR).

* :func:`mixup_batch`: the mixed inputs ``x = lam x_i + (1 - lam) x_j`` and soft targets
  ``t = lam e_{y_i} + (1 - lam) e_{y_j}`` of a batch and a random partner of each example, with
  ``lam ~ Beta(alpha, alpha)`` drawn per example; :func:`soft_cross_entropy` is the mixup loss
  ``-sum_k t_k log softmax(z)_k`` averaged over the batch.
* :func:`mixup_geometry`: for pairs of inputs ``(x_a, x_b)`` with classes ``(a, b)`` and mixing weights
  ``lam_1..lam_L``, the penultimate features ``h = phi(lam x_a + (1 - lam) x_b)`` and outputs ``z`` of every
  mix, summarised per pair and weight:

  - ``margins = z_a - z_b`` (cross-class pairs): the logit margin between the two classes; ``W h + b`` makes it
    ``<w_a - w_b, h> + b_a - b_b``, the signed distance of ``h`` to the a|b decision boundary times
    ``||w_a - w_b||``.  The mixup loss of one mix is minimised by ``softmax(z) = t``, i.e. ``margins =
    log(lam / (1 - lam))`` with no probability on a third class (:func:`theorylab.theory.mixup_optimal_margin`).
  - ``pair_mass = p_a + p_b`` (``p = softmax(z)``) and ``target_kl = KL(t || p)``, the mix's mixup loss
    above its minimum ``H(t)`` (the terminal phase of mixup training drives it to 0);
  - ``crossings``: the weight where the margin first changes sign, linearly interpolated between grid points
    (NaN for same-class pairs and for pairs whose margin keeps one sign);
  - against the class means ``mu_k`` of the features of the *unmixed* inputs (``x_a`` and ``x_b`` by their
    labels): for cross-class pairs the position along the segment from ``mu_b`` (0) to ``mu_a`` (1),
    ``position = <h - mu_b, mu_a - mu_b> / ||mu_a - mu_b||^2``, and the distance off the line through them,
    ``offset = ||h - mu_b - position (mu_a - mu_b)|| / ||mu_a - mu_b||``; for same-class pairs the distance to
    the class mean in units of the RMS distance ``D`` between distinct class means, ``spread = ||h - mu_a|| / D``;
  - with a classifier, ``classifier_cosines = cos(h - mu_G, w_a - w_bar)``: the alignment of the centred
    feature (``mu_G`` the mean of the class means) with the centred classifier row of class ``a`` (NC3 of
    Papyan, Han & Donoho 2020, per mix).

  Fisher et al. (abstract, Sec. 2 and 3) report that under mixup the same-class mixes align with the
  classifier while the cross-class mixes lie in channels along the decision boundary between the two classes;
  these fields measure both.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from theorylab._state import Mode
from theorylab.adapters import OutputFn
from theorylab.analyzer import analyzer
from theorylab.collapse import _classifier_of
from theorylab.plotting import MEASURED, PREDICTED, axes_or_new
from theorylab.representations import LayerSpec, resolve_layers, stream_activations
from theorylab.results import Result, result_class


def mixup_batch(x: Tensor, y: Tensor, num_classes: int, *, alpha: float = 1.0,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Mix each example of ``(x, y)`` with a random partner: returns ``(x_mix, targets, lam, partner)``.

    ``partner`` is a random permutation of the batch and ``lam ~ Beta(alpha, alpha)`` one per example, both
    drawn from ``generator``; ``x_mix = lam x + (1 - lam) x[partner]`` and
    ``targets = lam onehot(y) + (1 - lam) onehot(y[partner])`` (``(N, num_classes)``).
    """
    if not (alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"mixup needs real-valued inputs, got {x.dtype} (token ids cannot be mixed)")
    if y.dim() != 1 or len(y) != len(x) or len(x) < 1:
        raise ValueError(f"need one integer label per example, got x {tuple(x.shape)} and y {tuple(y.shape)}")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    n = len(x)
    partner = torch.randperm(n, generator=generator)
    if alpha == 1.0:  # Beta(1, 1) is uniform
        lam = torch.rand(n, generator=generator, dtype=torch.float64)
    else:  # numpy's Beta sampler, seeded from the generator
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        lam = torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, size=n))
    onehot = torch.nn.functional.one_hot(y, num_classes).to(torch.float64)
    lam_x = lam.reshape((n,) + (1,) * (x.dim() - 1)).to(device=x.device, dtype=x.dtype)
    x_mix = lam_x * x + (1 - lam_x) * x[partner.to(x.device)]
    lam_y = lam.to(y.device)[:, None]
    targets = lam_y * onehot + (1 - lam_y) * onehot[partner.to(y.device)]
    return x_mix, targets.to(device=x.device, dtype=x.dtype), lam, partner


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """``mean_i -sum_k t_ik log softmax(z_i)_k``: the mixup loss (cross-entropy against soft targets)."""
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
    return -(targets * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


@result_class
class MixupGeometry(Result):
    """Per pair (rows) and mixing weight (columns): see the module docstring for every field.

    ``lambdas`` ``(L,)``; ``labels_a``, ``labels_b`` and ``crossings`` ``(P,)``; ``margins``, ``pair_mass``,
    ``target_kl``, ``position``, ``offset``, ``spread`` and ``classifier_cosines`` ``(P, L)`` (NaN where a
    field does not apply to the pair); ``class_means`` ``(C, d)`` (NaN rows for classes without unmixed input).
    """

    lambdas: np.ndarray
    labels_a: np.ndarray
    labels_b: np.ndarray
    margins: np.ndarray
    pair_mass: np.ndarray
    target_kl: np.ndarray
    crossings: np.ndarray
    position: np.ndarray
    offset: np.ndarray
    spread: np.ndarray
    classifier_cosines: np.ndarray | None
    class_means: np.ndarray
    layer: str

    @property
    def cross(self) -> np.ndarray:
        """Boolean mask of the cross-class pairs."""
        return self.labels_a != self.labels_b

    def plot(self, ax: Any = None) -> Any:
        """The margins of the cross-class mixes against the weight, with the mixup optimum ``log(lam/(1-lam))``."""
        ax = axes_or_new(ax)
        lam = self.lambdas
        rows = self.margins[self.cross]
        if len(rows):
            ax.plot(lam, np.median(rows, axis=0), "o-", color=MEASURED, label="median margin z_a - z_b")
        inner = (lam > 0) & (lam < 1)
        ax.plot(lam[inner], np.log(lam[inner] / (1 - lam[inner])), "--", color=PREDICTED, label="log(lam / (1 - lam))")
        ax.set_xlabel("mixing weight lam of class a")
        ax.set_ylabel("logit margin")
        ax.legend()
        return ax


def _first_crossing(lambdas: np.ndarray, margin: np.ndarray) -> float:
    sign = np.sign(margin)
    if np.any(sign == 0):
        return float(lambdas[np.argmax(sign == 0)])
    change = np.nonzero(sign[:-1] != sign[1:])[0]
    if change.size == 0:
        return math.nan
    i = int(change[0])
    return float(lambdas[i] + (lambdas[i + 1] - lambdas[i]) * margin[i] / (margin[i] - margin[i + 1]))


def _as_labels(labels: Tensor | np.ndarray | Sequence[int], n: int, name: str) -> Tensor:
    out = torch.as_tensor(np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels))
    if out.shape != (n,) or out.dtype.is_floating_point or (n and int(out.min()) < 0):
        raise ValueError(f"{name} must hold one non-negative integer class per pair ({n}), "
                         f"got shape {tuple(out.shape)}")
    return out.long()


@analyzer
def mixup_geometry(model: nn.Module, x_a: Tensor, x_b: Tensor, lambdas: Tensor | np.ndarray | Sequence[float], *,
                   labels_a: Tensor | np.ndarray | Sequence[int], labels_b: Tensor | np.ndarray | Sequence[int],
                   classifier: LayerSpec | None = None, layer: LayerSpec | None = None, mode: Mode = "eval",
                   dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                   output: OutputFn | None = None) -> MixupGeometry:
    """The geometry of the mixes ``lam x_a[i] + (1 - lam) x_b[i]`` for every pair ``i`` and weight ``lam``.

    ``x_a``, ``x_b``: ``(P, ...)`` model inputs; ``labels_a``, ``labels_b``: their classes; ``lambdas`` in
    ``[0, 1]``, increasing.  The features are the input of ``layer`` (default: of ``classifier``, a module with a
    2-D ``weight``: the penultimate features); the model's outputs must be ``(N, classes)`` logits.  The mixes
    are formed in float64 and the unmixed inputs give the class means (one forward pass over all of them: small
    data only).  Field definitions: the module docstring.
    """
    if not isinstance(x_a, Tensor) or not isinstance(x_b, Tensor) or x_a.shape != x_b.shape or x_a.dim() < 2:
        raise ValueError("x_a and x_b must be tensors of one shape (pairs, ...)")
    if not (x_a.dtype.is_floating_point and x_b.dtype.is_floating_point):
        raise ValueError(f"mixup needs real-valued inputs, got {x_a.dtype} (token ids cannot be mixed)")
    if layer is None and classifier is None:
        raise ValueError("name the feature layer, the classifier, or both")
    lam = np.asarray(lambdas.detach().cpu() if isinstance(lambdas, Tensor) else lambdas, dtype=np.float64).ravel()
    if lam.size < 2 or np.any(lam < 0) or np.any(lam > 1) or np.any(np.diff(lam) <= 0):
        raise ValueError("lambdas must be at least two increasing weights in [0, 1]")
    pairs = len(x_a)
    ya, yb = _as_labels(labels_a, pairs, "labels_a"), _as_labels(labels_b, pairs, "labels_b")
    weight, _ = _classifier_of(model, classifier)
    layers = resolve_layers(model, layer if layer is not None else classifier)  # type: ignore[arg-type]
    (name,) = layers
    a64, b64 = x_a.detach().to(torch.float64), x_b.detach().to(torch.float64)
    lam_t = torch.as_tensor(lam).reshape((1, -1) + (1,) * (x_a.dim() - 1))
    mixes = (lam_t * a64[:, None] + (1 - lam_t) * b64[:, None]).reshape((-1,) + tuple(x_a.shape[1:]))
    inputs = torch.cat([a64, b64, mixes]).to(x_a.dtype if dtype is None else dtype)
    targets = torch.cat([ya, yb, ya.repeat_interleave(len(lam))])
    feats, outs = [], []
    for acts, _, out in stream_activations(model, (inputs, targets), layers, site="input", mode=mode, dtype=dtype,
                                           device=device, output=output):
        feats.append(acts[name].to(torch.float64).cpu())
        outs.append(out.to(torch.float64).cpu())
    h, z = torch.cat(feats), torch.cat(outs)
    if z.dim() != 2:
        raise ValueError(f"mixup geometry needs (N, classes) logits, got outputs of shape {tuple(z.shape)}")
    classes = z.shape[1]
    if int(torch.cat([ya, yb]).max()) >= classes:
        raise ValueError(f"labels must lie in 0..{classes - 1} (the model has {classes} outputs)")
    clean_h, clean_y = h[: 2 * pairs], torch.cat([ya, yb])
    h_mix, z_mix = h[2 * pairs:].reshape(pairs, len(lam), -1), z[2 * pairs:].reshape(pairs, len(lam), classes)
    means = torch.full((classes, h.shape[1]), math.nan, dtype=torch.float64)
    present = torch.unique(clean_y)
    for k in present.tolist():
        means[k] = clean_h[clean_y == k].mean(0)
    centre = means[present].mean(0)
    diffs = means[present][:, None] - means[present][None]
    off = ~torch.eye(len(present), dtype=torch.bool)
    scale = float(diffs.pow(2).sum(-1)[off].mean().sqrt()) if len(present) > 1 else math.nan

    rows = torch.arange(pairs)
    za, zb = z_mix[rows, :, ya], z_mix[rows, :, yb]
    logp = torch.log_softmax(z_mix, dim=2)
    lam_row = torch.as_tensor(lam)[None, :]
    same = ya == yb
    pair_mass = torch.where(same[:, None], logp[rows, :, ya].exp(), logp[rows, :, ya].exp() + logp[rows, :, yb].exp())
    ent = lambda p: torch.where(p > 0, p * torch.log(p.clamp_min(1e-300)), torch.zeros_like(p))  # noqa: E731
    target_kl = torch.where(same[:, None], -logp[rows, :, ya],
                            ent(lam_row) + ent(1 - lam_row) - lam_row * logp[rows, :, ya]
                            - (1 - lam_row) * logp[rows, :, yb])
    mu_a, mu_b = means[ya][:, None], means[yb][:, None]
    seg = mu_a - mu_b
    seg_sq = seg.pow(2).sum(-1)
    position = ((h_mix - mu_b) * seg).sum(-1) / seg_sq
    offset = (h_mix - mu_b - position[..., None] * seg).norm(dim=-1) / seg_sq.sqrt()
    nan = torch.full_like(position, math.nan)
    position, offset = torch.where(same[:, None], nan, position), torch.where(same[:, None], nan, offset)
    spread = torch.where(same[:, None], (h_mix - mu_a).norm(dim=-1) / scale, nan)
    cosines = None
    if weight is not None:
        if weight.shape != (classes, h.shape[1]):
            raise ValueError(f"classifier weight {tuple(weight.shape)} does not map the features ({h.shape[1]}) to "
                             f"the {classes} outputs")
        rows_w = (weight - weight.mean(0))[ya][:, None]
        cosines = torch.nn.functional.cosine_similarity(h_mix - centre, rows_w.expand_as(h_mix), dim=-1)
        cosines = cosines.numpy()
    margins = torch.where(same[:, None], nan, za - zb).numpy()
    crossings = np.array([math.nan if bool(same[i]) else _first_crossing(lam, margins[i]) for i in range(pairs)])
    return MixupGeometry(lambdas=lam, labels_a=ya.numpy(), labels_b=yb.numpy(), margins=margins,
                         pair_mass=pair_mass.numpy(), target_kl=target_kl.numpy(), crossings=crossings,
                         position=position.numpy(), offset=offset.numpy(), spread=spread.numpy(),
                         classifier_cosines=cosines, class_means=means.numpy(), layer=name)
