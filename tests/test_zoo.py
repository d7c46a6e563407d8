"""Every analyzer on the models researchers study (tests/zoo.py), and cross-checks only such models allow.

Each analyzer runs on each model of the zoo and returns finite numbers, or raises one clear error that
names the limitation; the model is left exactly as it was (the contract test checks the details on a
smaller model).  Cross-checks: the causal-LM loss helper equals HuggingFace's own loss; the Hessian of
a model with fused (SDPA) attention equals the Hessian of the same model with eager attention; the
recurrent models get per-example gradients through the loop fallback, equal to one backward pass per
example; a planted (B, T, d) activation gives its dormant fraction.
"""
import copy
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import theorylab as tl
from theorylab.adapters import causal_lm_loss
from theorylab.curvature import spectral_density, top_eigenvalues, trace
from theorylab.alignment import weight_matching
from theorylab.gradients import gradient_noise_scale, gradient_statistics, per_example_gradients
from theorylab.landscape import linear_interpolation, loss_surface
from theorylab.metrics import mean_loss
from theorylab.representations import activation_ranks, dormant_ratio, weight_spectrum
from theorylab.results import Result
from theorylab.sharpness import adaptive_sharpness, average_sharpness, sam_sharpness, stability_ratios

from theorylab.algorithmic import logit_scaling_cosine, softmax_collapse_fraction
from theorylab.attribution import input_gradients
from theorylab.collapse import layerwise_collapse
from theorylab.difficulty import correct_predictions, el2n_scores, grand_scores
from theorylab.gradients import gradient_ranks, group_gradient_cosines, parameter_snapshot, per_parameter_snr
from theorylab.implicit_bias import normalized_margin
from theorylab.feature_learning import planted_feature_alignment
from theorylab.transfer import head_hessian_alignment, transfer_measure
from theorylab.information import information_plane
from theorylab.mixup import mixup_geometry
from theorylab.representations import layer_activations, weight_matrices, weight_ranks
from theorylab.sampling import sampling_gradient_variance
from theorylab.updates import layer_gradient_ranks, neuron_update_norms, update_ranks

from zoo import ZOO

pytest.importorskip("transformers")


def _probe(size, seed=0):
    return torch.randn(size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _finite(value):
    if isinstance(value, Result):
        encoded = value.to_dict()
        encoded.pop("meta")
        return _finite(encoded)
    if isinstance(value, dict):
        return all(_finite(v) for k, v in value.items() if k != "type")
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value).all())
    if isinstance(value, float):
        return math.isfinite(value)
    return True


ANALYSES = {
    "hessian": lambda c: tl.hessian(c.model, c.loss_fn, c.data, mode=c.mode) @ _probe(
        sum(p.numel() for p in c.model.parameters())),
    "ggn": lambda c: tl.ggn(c.model, c.loss_fn, c.data, mode=c.mode) @ _probe(
        sum(p.numel() for p in c.model.parameters())),
    "fisher": lambda c: tl.fisher(c.model, c.loss_fn, c.data, mode=c.mode, num_draws=2) @ _probe(
        sum(p.numel() for p in c.model.parameters())),
    "empirical_fisher": lambda c: tl.empirical_fisher(c.model, c.loss_fn, c.data, mode=c.mode) @ _probe(
        sum(p.numel() for p in c.model.parameters())),
    "kfac": lambda c: _kfac_product(c),
    "top_eigenvalues": lambda c: top_eigenvalues(tl.hessian(c.model, c.loss_fn, c.data, mode=c.mode), k=2, tol=1e-3,
                                                 seed=0),
    "trace": lambda c: trace(tl.hessian(c.model, c.loss_fn, c.data, mode=c.mode), num_probes=6, method="hutch++",
                             seed=0),
    "spectral_density": lambda c: spectral_density(tl.hessian(c.model, c.loss_fn, c.data, mode=c.mode), num_steps=5,
                                                   num_probes=1, seed=0),
    "lambda_max": lambda c: tl.lambda_max(c.model, c.loss_fn, c.data, mode=c.mode, tol=1e-3),
    "sam_sharpness": lambda c: sam_sharpness(c.model, c.loss_fn, c.data, rho=0.01, mode=c.mode),
    "adaptive_sharpness": lambda c: adaptive_sharpness(c.model, c.loss_fn, c.data, rho=0.01, steps=2, mode=c.mode),
    "average_sharpness": lambda c: average_sharpness(c.model, c.loss_fn, c.data, rho=0.01, num_draws=3, mode=c.mode),
    "per_example_gradients": lambda c: per_example_gradients(c.model, c.loss_fn, c.data, mode=c.mode),
    "gradient_statistics": lambda c: gradient_statistics(c.model, c.loss_fn, c.data, mode=c.mode),
    "gradient_noise_scale": lambda c: gradient_noise_scale(c.model, c.loss_fn, c.batch, small_batch=2, big_batch=4,
                                                           num_pairs=2, mode=c.mode),
    "activation_ranks": lambda c: activation_ranks(c.model, c.data, layers=c.layers, mode=c.mode),
    "dormant_ratio": lambda c: dormant_ratio(c.model, c.data, layers=c.layers, mode=c.mode),
    "weight_spectrum": lambda c: weight_spectrum(c.model, min_tail=3),
    "model_collapse": lambda c: tl.model_collapse(c.model, c.data, layer=None if c.classifier else c.layers[-1],
                                                  classifier=c.classifier, mode=c.mode),
    "mean_loss": lambda c: mean_loss(c.model, c.loss_fn, c.data, mode=c.mode),
    "loss_surface": lambda c: loss_surface(c.model, c.loss_fn, c.data, num_points=3, mode=c.mode),
    "linear_interpolation": lambda c: linear_interpolation(c.model, _perturbed(c.model), c.loss_fn, c.data,
                                                           num_points=3, mode=c.mode),
    "weight_matching": lambda c: weight_matching(c.model, _perturbed(c.model), data=c.data[0]),
    "stability_ratios": lambda c: stability_ratios(c.model, c.loss_fn, c.data, lr=0.1, num_probes=3, tol=1e-3,
                                                      mode=c.mode),
    "accuracy": lambda c: tl.accuracy(c.model, c.data, mode=c.mode),
    "per_parameter_snr": lambda c: _defined_snr(per_parameter_snr(c.model, c.loss_fn, c.data, mode=c.mode)),
    "gradient_ranks": lambda c: gradient_ranks(c.model, c.loss_fn, c.data, mode=c.mode),
    "group_gradient_cosines": lambda c: group_gradient_cosines(c.model, c.loss_fn, c.data, mode=c.mode),
    "layer_activations": lambda c: layer_activations(c.model, c.data, layers=c.layers, mode=c.mode, layout="auto"),
    "layerwise_collapse": lambda c: layerwise_collapse(c.model, c.data, layers=c.layers, mode=c.mode),
    "weight_ranks": lambda c: weight_ranks(c.model),
    "update_ranks": lambda c: update_ranks(c.model, parameter_snapshot(_perturbed(c.model))),
    "neuron_update_norms": lambda c: neuron_update_norms(c.model, parameter_snapshot(_perturbed(c.model))),
    "layer_gradient_ranks": lambda c: layer_gradient_ranks(c.model, c.loss_fn, c.data, mode=c.mode),
    "el2n_scores": lambda c: el2n_scores(c.model, c.data, mode=c.mode),
    "grand_scores": lambda c: grand_scores(c.model, c.loss_fn, c.data, mode=c.mode),
    "correct_predictions": lambda c: correct_predictions(c.model, c.data, mode=c.mode),
    "softmax_collapse_fraction": lambda c: softmax_collapse_fraction(c.model, c.data, mode=c.mode),
    "logit_scaling_cosine": lambda c: logit_scaling_cosine(c.model, c.loss_fn, c.data, mode=c.mode),
    "input_gradients": lambda c: input_gradients(c.model, c.loss_fn, c.data, mode=c.mode),
    "information_plane": lambda c: information_plane(c.model, c.data, layers=c.layers, mode=c.mode),
    "planted_feature_alignment": lambda c: _planted_alignment(c.model),
    "mixup_geometry": lambda c: _mixup_geometry(c),
    # two domains: the first batch against the others
    "head_hessian_alignment": lambda c: head_hessian_alignment(c.model, c.loss_fn, c.data[:1], c.data[1:], tol=1e-3,
                                                               mode=c.mode),
    "transfer_measure": lambda c: transfer_measure(c.model, c.loss_fn, c.data[:1], c.data[1:], radius=0.01, steps=2,
                                                   restarts=0, mode=c.mode),
    "normalized_margin": lambda c: normalized_margin(c.model, c.data, mode=c.mode),
    "sampling_gradient_variance": lambda c: sampling_gradient_variance(
        c.model, c.loss_fn, c.data, weights=torch.ones(len(c.batch[1] if isinstance(c.batch, tuple) else c.batch["labels"])),
        scheme="upweight", batch_size=2, mode=c.mode),
}


def _defined_snr(snr):
    """The GSNR entries that are defined (NaN marks entries whose gradient is 0 for every example)."""
    defined = {name: v[~torch.isnan(v)] for name, v in snr.items()}
    assert sum(v.numel() for v in defined.values()) > 0
    return defined


def _planted_alignment(model):
    """Two random directions in the input space of the model's first weight matrix."""
    name, w = next(iter(weight_matrices(model)[0].items()))
    return planted_feature_alignment(model, _probe(2 * w.shape[1]).reshape(2, -1), params=name)


def _mixup_geometry(c):
    """Mixes of the first and second halves of the data; the fields that apply to these pairs (NaN elsewhere)."""
    x, y = (c.batch["input_ids"], c.batch["labels"]) if isinstance(c.batch, dict) else c.batch
    half = len(x) // 2
    geo = mixup_geometry(c.model, x[:half], x[half:2 * half], [0.0, 0.5, 1.0], labels_a=y[:half],
                         labels_b=y[half:2 * half], classifier=c.classifier,
                         layer=None if c.classifier else c.layers[-1], mode=c.mode)
    fields = [geo.pair_mass, geo.target_kl, geo.margins[geo.cross], geo.offset[geo.cross], geo.spread[~geo.cross]]
    assert sum(f.size for f in fields[2:]) > 0
    fields += [geo.classifier_cosines] if geo.classifier_cosines is not None else []
    return [torch.as_tensor(f) for f in fields]


def _perturbed(model):
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return other

def _kfac_product(c):
    """K-FAC over the model's nn.Linear and nn.Conv2d layers (the only layers it covers), times a probe."""
    layers = [m for m in c.model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    op = tl.kfac(c.model, c.loss_fn, c.data, mode=c.mode, params=layers)
    u, v = _probe(op.shape[0], seed=1), _probe(op.shape[0], seed=2)
    assert float(u @ (op @ v)) == pytest.approx(float(v @ (op @ u)), rel=1e-10)  # symmetric
    assert float(u @ (op @ u)) >= 0  # positive semi-definite
    return op @ v


# where an analysis does not apply, the one clear error it must raise
LIMITS = {
    ("gpt2", "fisher"): "cannot tell which likelihood causal_lm_loss",  # next-token cross-entropy over (B, T, V) logits
    # weight matching infers the permutations of plain chains of layers only; other networks need a spec
    ("gpt2", "weight_matching"): "outside such a chain; pass spec=",
    ("vit", "weight_matching"): "outside such a chain; pass spec=",
    ("lstm", "weight_matching"): "outside such a chain; pass spec=",
    ("gru", "weight_matching"): "outside such a chain; pass spec=",
    ("resnet", "weight_matching"): "pass spec= for this model",  # skip connections
    ("gpt2", "kfac"): "cannot tell which likelihood causal_lm_loss",  # and HF Conv1D layers, lm_head tied to wte
    ("gpt2", "model_collapse"): "labels must have shape",  # a language model has token labels, not classes
    ("gpt2", "layerwise_collapse"): "labels must have shape",
    ("gpt2", "group_gradient_cosines"): "group ids must be a 1-D integer tensor",
    ("gpt2", "information_plane"): "labels must have one row per sample",
    ("gpt2", "el2n_scores"): "EL2N needs \\(N, classes\\) outputs",
    ("gpt2", "correct_predictions"): "for a sequence model choose one position",
    ("gpt2", "softmax_collapse_fraction"): "for a sequence model choose one position",
    ("gpt2", "normalized_margin"): "for a sequence model choose one position",
    ("gpt2", "input_gradients"): "token ids",  # integer inputs have no gradient
    ("gpt2", "mixup_geometry"): "token ids cannot be mixed",
}


@pytest.fixture(scope="module", params=sorted(ZOO))
def case(request):
    return ZOO[request.param]()


@pytest.mark.parametrize("analysis", sorted(ANALYSES))
def test_every_analyzer_runs_on_every_model_or_says_why_not(case, analysis):
    state = {k: v.clone() for k, v in case.model.state_dict().items()}
    modes = [m.training for m in case.model.modules()]
    limit = LIMITS.get((case.name, analysis))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the vmap fallback's one-line note
        if limit is not None:
            with pytest.raises(ValueError, match=limit):
                ANALYSES[analysis](case)
        else:
            assert _finite(ANALYSES[analysis](case))
    assert all(torch.equal(v, state[k]) for k, v in case.model.state_dict().items())
    assert [m.training for m in case.model.modules()] == modes


def test_every_registered_analyzer_meets_the_zoo():
    from theorylab.analyzer import ANALYZERS

    elsewhere = {"empirical_ntk", "empirical_ntk_blocks",  # tests/test_kernels_zoo.py, against explicit J J^T
                 "parameter_snapshot", "distance_from_init"}  # parameter bookkeeping, no forward pass
    assert set(ANALYZERS) - elsewhere <= set(ANALYSES), sorted(set(ANALYZERS) - elsewhere - set(ANALYSES))


def test_causal_lm_loss_equals_huggingface_loss():
    case = ZOO["gpt2"]()
    batch = case.data[0]
    with torch.no_grad():
        theirs = case.model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
        ours = causal_lm_loss(case.model(input_ids=batch["input_ids"]).logits, batch["labels"])
    assert float(ours) == pytest.approx(float(theirs), rel=1e-12)
    assert mean_loss(case.model, causal_lm_loss, batch) == pytest.approx(float(theirs), rel=1e-12)


def test_hessian_with_fused_attention_equals_hessian_with_eager_attention():
    from transformers import GPT2LMHeadModel

    case = ZOO["gpt2"]()
    config = case.model.config
    config._attn_implementation = "eager"
    eager = GPT2LMHeadModel(config).double().eval()
    eager.load_state_dict(case.model.state_dict())
    config._attn_implementation = "sdpa"
    v = _probe(sum(p.numel() for p in case.model.parameters()), seed=1)
    fused = tl.hessian(case.model, causal_lm_loss, case.data) @ v
    reference = tl.hessian(eager, causal_lm_loss, case.data) @ v
    torch.testing.assert_close(fused, reference, rtol=1e-10, atol=1e-12)
    assert fused.norm() > 0


def test_tied_embedding_is_one_parameter_with_both_names():
    case = ZOO["gpt2"]()
    op = tl.hessian(case.model, causal_lm_loss, case.data, params="lm_head")
    assert op.param_names == ["transformer.wte.weight"]
    assert op.meta["params"] == ["transformer.wte.weight (tied: lm_head.weight)"]


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_recurrent_per_example_gradients_equal_one_backward_per_example(kind):
    case = ZOO[kind]()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        grads = per_example_gradients(case.model, case.loss_fn, case.data)
    x, y = case.batch
    for i in range(len(y)):
        case.model.zero_grad()
        case.loss_fn(case.model(x[i:i + 1]), y[i:i + 1]).backward()
        expected = torch.cat([p.grad.reshape(-1) for p in case.model.parameters()])
        torch.testing.assert_close(grads[i], expected, rtol=1e-10, atol=1e-12)
    case.model.zero_grad(set_to_none=True)


def test_gru_falls_back_to_a_loop_with_one_warning():
    case = ZOO["gru"]()
    with pytest.warns(RuntimeWarning, match="vmap cannot batch"):
        gradient_statistics(case.model, case.loss_fn, case.data, chunk_size=2)


class _Planted(nn.Module):
    """A transformer-style MLP activation (B, T, 64) whose last 16 features are dead."""

    def __init__(self):
        super().__init__()
        self.up = nn.Linear(8, 64)
        self.act = nn.ReLU()
        with torch.no_grad():
            self.up.weight[48:] = 0
            self.up.bias[48:] = -1.0

    def forward(self, x):
        return self.act(self.up(x)).mean(1)


def test_dormant_ratio_of_sequence_activations_counts_features_not_positions():
    model = _Planted().double()
    x = torch.randn(5, 7, 8, dtype=torch.float64)
    result = dormant_ratio(model, (x, torch.zeros(5)), layers="act")
    assert result.num_neurons[0] == 64
    assert result.dormant_fraction[0] == pytest.approx(0.25)
    flat = dormant_ratio(model, (x, torch.zeros(5)), layers="act", layout="flat")
    assert flat.num_neurons[0] == 7 * 64


def test_sequence_activation_ranks_use_tokens_as_samples_and_the_smaller_gram():
    model = _Planted().double()
    x = torch.randn(3, 7, 8, dtype=torch.float64)
    tokens = activation_ranks(model, (x, torch.zeros(3)), layers="act")
    flat = activation_ranks(model, (x, torch.zeros(3)), layers="act", layout="flat")
    rows = model.act(model.up(x)).detach()
    for result, matrix in ((tokens, rows.reshape(-1, 64)), (flat, rows.reshape(3, -1))):
        sigma = torch.linalg.svdvals(matrix).numpy()
        p = sigma / sigma.sum()
        p = p[p > 0]
        assert result.effective_rank[0] == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-9)
        assert result.dimension[0] == matrix.shape[1]


def test_weight_spectrum_skips_class_tokens_and_says_so():
    case = ZOO["vit"]()
    result = weight_spectrum(case.model, min_tail=3)
    assert "cls_token" in result.skipped and "not a matrix" in result.skipped["cls_token"]
    assert "pos_embed" in result.layers and result.eigenvalues["pos_embed"].shape == (5,)  # a 5 x 16 matrix
