"""One contract over every registered analyzer (theorylab.analyzer.ANALYZERS).

For each analyzer, on a model with BatchNorm, dropout, submodules in mixed train/eval modes, a frozen
parameter, existing ``.grad`` and a user's hook, over a loader of uneven batches:

* no side effects: parameters (values and storage), buffers, every submodule's train flag, ``.grad``,
  ``requires_grad``, hooks, and the torch / numpy / Python random generators are as they were;
* deterministic given its seed: two calls give equal results;
* results round-trip through ``to_dict()``;
* float64 on CPU: a float32 model analysed with ``dtype=torch.float64`` gives the float64 model's numbers;
* the shared options are validated, with the same messages everywhere.

A new public analyzer must be registered (declared with ``@analyzer``) and get an entry in ``CALLS``.
"""
import copy
import importlib
import inspect
import random

import numpy as np
import pytest
import torch
from torch import nn

import theorylab
from theorylab.analyzer import ANALYZERS
from theorylab.curvature.operators import LinearOperator
from theorylab.results import Result

ANALYZER_MODULES = ["theorylab.curvature", "theorylab.sharpness", "theorylab.gradients", "theorylab.kernels",
                    "theorylab.representations", "theorylab.collapse", "theorylab.metrics", "theorylab.landscape",
                    "theorylab.alignment", "theorylab.implicit_bias", "theorylab.sampling", "theorylab.difficulty",
                    "theorylab.information", "theorylab.algorithmic", "theorylab.attribution", "theorylab.updates",
                    "theorylab.feature_learning", "theorylab.mixup", "theorylab.transfer"]
for _module in ANALYZER_MODULES:
    importlib.import_module(_module)  # declaring an analyzer registers it


class ContractNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.3), nn.Linear(8, 8),
                                  nn.Tanh())
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.body(x))


def _case(dtype=torch.float64):
    torch.manual_seed(0)
    model = ContractNet().to(dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(13, 6, generator=g).to(dtype)
    y = torch.randint(0, 3, (13,), generator=g)
    y[:3] = torch.arange(3)
    model.train()
    nn.CrossEntropyLoss()(model(x), y).backward()  # a user's gradients, which must survive
    model.body[1].eval()  # mixed modes: BatchNorm in eval, dropout in train
    model.body[0].bias.requires_grad_(False)
    model.head.register_forward_hook(lambda module, inputs, output: None)
    return model, nn.CrossEntropyLoss(), [(x[:5], y[:5]), (x[5:11], y[5:11]), (x[11:], y[11:])], (x, y)


def _other(model):
    """A second network of the same architecture (analyzers of two models only read it)."""
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for p in other.parameters():
            # float32 arithmetic: the float32 and float64 copies of a model get the same other network
            p.copy_((p.float() + 0.3 * torch.randn(p.shape, generator=g)).to(p.dtype))
    return other


# name -> (model, loss, loader, batch) -> (args, kwargs); stochastic analyzers get an explicit seed
CALLS = {
    "hessian": lambda m, loss, data, b: ((m, loss, data), {}),
    "ggn": lambda m, loss, data, b: ((m, loss, data), {}),
    "fisher": lambda m, loss, data, b: ((m, loss, data), {"num_draws": 2, "seed": 3}),
    "empirical_fisher": lambda m, loss, data, b: ((m, loss, data), {"chunk_size": 4}),
    "kfac": lambda m, loss, data, b: ((m, loss, data), {"params": ["body.0", "body.4", "head"]}),
    "lambda_max": lambda m, loss, data, b: ((m, loss, data), {"seed": 3, "tol": 1e-8}),
    "stability_ratios": lambda m, loss, data, b: ((m, loss, data), {"lr": 0.1, "num_probes": 4, "seed": 3}),
    "sam_sharpness": lambda m, loss, data, b: ((m, loss, data), {"rho": 0.05}),
    "adaptive_sharpness": lambda m, loss, data, b: ((m, loss, data), {"rho": 0.05, "steps": 2, "seed": 3}),
    "average_sharpness": lambda m, loss, data, b: ((m, loss, data), {"rho": 0.05, "num_draws": 3, "seed": 3}),
    "per_example_gradients": lambda m, loss, data, b: ((m, loss, data), {"chunk_size": 4}),
    "gradient_statistics": lambda m, loss, data, b: ((m, loss, data), {"chunk_size": 4}),
    "per_parameter_snr": lambda m, loss, data, b: ((m, loss, data), {}),
    "gradient_noise_scale": lambda m, loss, data, b: ((m, loss, b), {"small_batch": 2, "big_batch": 4,
                                                                      "num_pairs": 3, "seed": 3}),
    "group_gradient_cosines": lambda m, loss, data, b: ((m, loss, data), {}),
    "gradient_ranks": lambda m, loss, data, b: ((m, loss, data), {}),
    "parameter_snapshot": lambda m, loss, data, b: ((m,), {}),
    "distance_from_init": lambda m, loss, data, b: ((m, {n: p.detach() * 0 for n, p in m.named_parameters()}), {}),
    "empirical_ntk": lambda m, loss, data, b: ((m, b[0][:5]), {"block_size": 2}),
    "empirical_ntk_blocks": lambda m, loss, data, b: ((m, b[0][:5], b[0][5:7]), {"block_size": 2}),
    "layer_activations": lambda m, loss, data, b: ((m, data), {"layers": ["body.2", "head"]}),
    "activation_ranks": lambda m, loss, data, b: ((m, data), {"layers": ["body.2", "body.5"]}),
    "dormant_ratio": lambda m, loss, data, b: ((m, data), {"layers": ["body.2"]}),
    "weight_ranks": lambda m, loss, data, b: ((m,), {}),
    "weight_spectrum": lambda m, loss, data, b: ((m,), {"min_tail": 2}),
    "model_collapse": lambda m, loss, data, b: ((m, data), {"classifier": "head"}),
    "layerwise_collapse": lambda m, loss, data, b: ((m, data), {"layers": ["body.2", "body.5"]}),
    "mean_loss": lambda m, loss, data, b: ((m, loss, data), {}),
    "loss_surface": lambda m, loss, data, b: ((m, loss, data), {"num_points": 3, "seed": 3}),
    "linear_interpolation": lambda m, loss, data, b: ((m, _other(m), loss, data), {"num_points": 3}),
    "weight_matching": lambda m, loss, data, b: ((m, _other(m)), {"seed": 3}),
    "accuracy": lambda m, loss, data, b: ((m, data), {}),
    "normalized_margin": lambda m, loss, data, b: ((m, data), {"homogeneity": 2.0}),
    "sampling_gradient_variance": lambda m, loss, data, b: ((m, loss, data), {
        "weights": torch.arange(1.0, 14.0), "scheme": "upweight", "batch_size": 2, "chunk_size": 4}),
    "el2n_scores": lambda m, loss, data, b: ((m, data), {}),
    "grand_scores": lambda m, loss, data, b: ((m, loss, data), {"chunk_size": 4}),
    "correct_predictions": lambda m, loss, data, b: ((m, data), {}),
    "softmax_collapse_fraction": lambda m, loss, data, b: ((m, data), {}),
    "logit_scaling_cosine": lambda m, loss, data, b: ((m, loss, data), {}),
    "input_gradients": lambda m, loss, data, b: ((m, loss, data), {}),
    "update_ranks": lambda m, loss, data, b: ((m, {n: p.detach() * 0.5 for n, p in m.named_parameters()}), {}),
    "layer_gradient_ranks": lambda m, loss, data, b: ((m, loss, data), {}),
    "neuron_update_norms": lambda m, loss, data, b: ((m, {n: p.detach() * 0.5 for n, p in m.named_parameters()}),
                                                     {}),
    "information_plane": lambda m, loss, data, b: ((m, data), {"layers": ["body.2"], "value_range": (-1.0, 1.0)}),
    "head_hessian_alignment": lambda m, loss, data, b: ((m, loss, data, (b[0][:7], b[1][:7])),
                                                        {"params": "head", "seed": 3}),
    "transfer_measure": lambda m, loss, data, b: ((m, loss, data, (b[0][:7], b[1][:7])), {
        "params": "head", "radius": 0.5, "weight_decay": 0.01, "steps": 4, "restarts": 1, "seed": 3}),
    "planted_feature_alignment": lambda m, loss, data, b: (
        (m, torch.eye(6, dtype=torch.float64)[:2] * torch.tensor([[2.0], [0.5]], dtype=torch.float64)),
        {"signs": torch.tensor([1.0, -1.0]).repeat(4)}),
    "mixup_geometry": lambda m, loss, data, b: ((m, b[0][:6], b[0][6:12], [0.0, 0.5, 1.0]), {
        "labels_a": b[1][:6], "labels_b": b[1][6:12], "classifier": "head"}),
}


# functions of a model that measure nothing themselves: they select layers or stream activations for analyzers
BUILDING_BLOCKS = {"resolve_layers", "stream_activations", "weight_matrices", "random_direction", "interpolation_state",
                   "chain_spec", "random_permutation", "check_symmetry", "pgd_perturbation"}
# analyzers of single examples: undefined where BatchNorm in train mode couples the examples of a batch
PER_EXAMPLE = {"per_example_gradients", "empirical_fisher", "gradient_statistics", "per_parameter_snr",
               "group_gradient_cosines", "gradient_ranks", "empirical_ntk", "empirical_ntk_blocks",
               "sampling_gradient_variance", "grand_scores", "input_gradients"}


def test_every_registered_analyzer_is_covered_and_every_public_model_function_is_registered():
    assert set(CALLS) == set(ANALYZERS)
    unregistered = []
    for module_name in ANALYZER_MODULES:
        module = importlib.import_module(module_name)
        for name, obj in vars(module).items():
            if (name.startswith("_") or not inspect.isfunction(obj) or name.endswith("_monitor")
                    or name in BUILDING_BLOCKS or not obj.__module__.startswith(module_name)):
                continue
            params = list(inspect.signature(obj).parameters)
            if params[:1] == ["model"] and name not in ANALYZERS:
                unregistered.append(f"{module_name}.{name}")
    assert not unregistered, f"public functions of a model not declared with @analyzer: {unregistered}"


def _state(model):
    return {
        "params": [(n, p.detach().clone(), p.data_ptr(), p.requires_grad) for n, p in model.named_parameters()],
        "buffers": [(n, b.clone()) for n, b in model.named_buffers()],
        "modes": [m.training for m in model.modules()],
        "grads": [(p.grad, None if p.grad is None else p.grad.clone()) for p in model.parameters()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
        "rng": (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()),
    }


def _assert_same_state(before, after):
    for (n, p, ptr, rg), (_, q, qptr, qrg) in zip(before["params"], after["params"]):
        assert torch.equal(p, q) and ptr == qptr and rg == qrg, f"parameter {n} changed"
    for (n, b), (_, c) in zip(before["buffers"], after["buffers"]):
        assert torch.equal(b, c), f"buffer {n} changed"
    assert before["modes"] == after["modes"], "train/eval flags changed"
    for (g, gc), (h, hc) in zip(before["grads"], after["grads"]):
        assert g is h and (gc is None or torch.equal(gc, hc)), ".grad changed"
    assert before["hooks"] == after["hooks"], "hooks changed"
    assert torch.equal(before["rng"][0], after["rng"][0]), "torch RNG changed"
    assert np.array_equal(before["rng"][1], after["rng"][1]), "numpy RNG changed"
    assert before["rng"][2] == after["rng"][2], "Python RNG changed"


def _numbers(value, probe):
    """What two results are compared by: a Result's dict without meta, a tensor, an operator's product."""
    if isinstance(value, LinearOperator):
        return (value @ probe(value.shape[0])).detach()
    if isinstance(value, Result):
        encoded = value.to_dict()
        encoded.pop("meta")
        return encoded
    return value


def _probe(size):
    return torch.randn(size, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


def _assert_close(a, b, rtol=0.0, path="result"):
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), path
        for k in a:
            if k != "meta":
                _assert_close(a[k], b[k], rtol, f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b)):
            _assert_close(u, v, rtol, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a.double(), b.double(), rtol=rtol, atol=rtol, msg=path)
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=rtol, abs=rtol, nan_ok=True), path
    else:
        assert a == b, path


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_no_side_effects_determinism_and_round_trip(name, mode):
    spec = ANALYZERS[name]
    if mode == "train" and "mode" not in spec.options:
        pytest.skip(f"{name} has no mode option")
    model, loss, data, batch = _case()
    args, kwargs = CALLS[name](model, loss, data, batch)
    if "mode" in spec.options:
        kwargs["mode"] = mode
    before = _state(model)
    if mode == "train" and name in PER_EXAMPLE:  # the model has BatchNorm: one clear error
        with pytest.raises(ValueError, match="BatchNorm in train mode couples the examples"):
            spec.function(*args, **kwargs)
        _assert_same_state(before, _state(model))
        return
    first = spec.function(*args, **kwargs)
    _assert_same_state(before, _state(model))
    second = spec.function(*args, **kwargs)
    _assert_close(_numbers(first, _probe), _numbers(second, _probe))
    _assert_same_state(before, _state(model))
    if isinstance(first, Result):
        assert Result.from_dict(first.to_dict()) == first
        assert first.meta["theorylab_version"] and "wall_time_s" in first.meta
        if "mode" in spec.options:
            assert first.meta["mode"] == mode


@pytest.mark.parametrize("name", sorted(n for n in CALLS if "dtype" in ANALYZERS[n].options))
def test_float32_model_analysed_in_float64_equals_the_float64_model(name):
    spec = ANALYZERS[name]
    model64, loss, data64, batch64 = _case(torch.float64)
    model32, _, data32, batch32 = _case(torch.float32)
    with torch.no_grad():
        for t32, t64 in zip(model32.state_dict().values(), model64.state_dict().values()):
            t64.copy_(t32)
    data64 = [(x.float().double(), y) for x, y in data32]
    batch64 = (batch32[0].double(), batch32[1])
    args32, kwargs32 = CALLS[name](model32, loss, data32, batch32)
    args64, kwargs64 = CALLS[name](model64, loss, data64, batch64)
    in64 = spec.function(*args32, **kwargs32, dtype=torch.float64)
    reference = spec.function(*args64, **kwargs64)
    _assert_close(_numbers(in64, _probe), _numbers(reference, _probe), rtol=1e-9)
    if isinstance(in64, Result):
        assert in64.meta["dtype"] in ("torch.float64",)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_shared_options_are_validated_with_one_message(name):
    spec = ANALYZERS[name]
    model, loss, data, batch = _case()
    args, kwargs = CALLS[name](model, loss, data, batch)
    bad = {"mode": ("inference", "mode must be one of"), "dtype": (torch.int64, "dtype must be a floating"),
           "params": ("decoder", "matched no parameter"), "seed": (-1, "seed must be an integer"),
           "device": ("gpu:7", "unknown device"), "output": (3, "output must be a function"),
           "loss_fn": ("mse", "loss_fn must be a function"),
           "process_group": (object(), "torch.distributed is not initialised")}
    for option in spec.options:
        if option not in bad:
            continue
        value, message = bad[option]
        call_args = list(args)
        if option == "loss_fn":
            call_args[list(inspect.signature(spec.function).parameters).index("loss_fn")] = value
            with pytest.raises(ValueError, match=message):
                spec.function(*call_args, **kwargs)
            continue
        with pytest.raises(ValueError, match=message):
            spec.function(*call_args, **{**kwargs, option: value})
    with pytest.raises(ValueError, match="model must be a torch.nn.Module"):
        spec.function("not a model", *args[1:], **kwargs)


def test_tied_parameters_are_reported_by_all_their_names():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(5, 4)
            self.out = nn.Linear(4, 5, bias=False)
            self.out.weight = self.embed.weight

        def forward(self, tokens):
            return self.out(self.embed(tokens)).mean(1)

    model = Tied().double()
    tokens, labels = torch.randint(0, 5, (6, 3)), torch.randint(0, 5, (6,))
    op = theorylab.hessian(model, nn.CrossEntropyLoss(), (tokens, labels), params="out")
    assert op.param_names == ["embed.weight"]
    assert op.meta["params"] == ["embed.weight (tied: out.weight)"]
