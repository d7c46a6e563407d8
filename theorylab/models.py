"""A small model zoo.  Every model is a plain ``nn.Module``.

MLP parametrizations (width ``n`` of the hidden layers, input dimension ``d``, weight variance
``sw^2 = weight_var``, bias variance ``sb^2 = bias_var``; each layer computes
``h' = multiplier * W h + bias_multiplier * b`` with trainable ``W``, ``b``):

=================  ===========================  ==================  =======================================
parametrization    multiplier                   init of W entries   effect under SGD with step eta
=================  ===========================  ==================  =======================================
``sp``  standard   1                            N(0, sw^2/fan_in)   output and kernel blow up with lr fixed
``ntk``            sw / sqrt(fan_in)            N(0, 1)             kernel regime as n -> inf (Jacot 2018)
``mup``  maximal   input: sw sqrt(n/d);         N(0, 1/n)           feature learning at every width; the
update             hidden: sw; output: 1/sqrt(n)                    best eta transfers across widths
=================  ===========================  ==================  =======================================

``mup`` is the abc-parametrization of Yang & Hu 2021 ("Tensor Programs IV", Table 1 / Eq. 7:
a_1 = -1/2, a_l = 0, a_{L+1} = 1/2, b_l = 1/2, c = 0) with the constant 1/d folded into the input
layer: at initialisation the forward pass equals the standard one for hidden layers, the output
layer starts at variance 1/n^2, and plain SGD on ``W`` gives effective learning rates ``eta n`` for
the input layer and biases, ``eta`` for hidden layers and ``eta / n`` for the output layer (Yang
et al. 2021, "Tensor Programs V", Table 3).  Biases: ``ntk`` uses ``b = sb * beta, beta ~ N(0, 1)``;
``sp`` draws ``b ~ N(0, sb^2)``; ``mup`` uses multiplier ``sqrt(n)`` with ``b ~ N(0, sb^2/n)`` for input and
hidden layers (effective learning rate ``eta n``) and multiplier 1 with ``b ~ N(0, sb^2)`` for the output
bias (learning rate ``eta``: its fan-out does not grow with width).

``MLP(..., parametrization="ntk", weight_var=..., bias_var=...)`` is the network of
:func:`theorylab.kernels.analytic_ntk` with the same names and defaults (``weight_var=1``, as in
neural-tangents' ``stax.Dense``; ``bias_var=0``), so its empirical NTK approaches the analytic one as
the width grows (pass ``weight_var=2``, the ReLU-critical value, to both for deep ReLU networks).

``output_multiplier`` (alpha) scales the network output, ``f = alpha * readout(h)``: large alpha
makes training lazy (Chizat, Oyallon & Bach 2019).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

Activation = Literal["relu", "tanh", "gelu", "erf", "linear"]
Parametrization = Literal["sp", "ntk", "mup"]
_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "gelu": nn.functional.gelu, "erf": torch.erf,
                "linear": lambda t: t}


class ScaledLinear(nn.Module):
    """``y = multiplier * x W^T + bias_multiplier * b`` with ``W ~ N(0, init_std^2)`` (abc-parametrization)."""

    def __init__(self, fan_in: int, fan_out: int, *, multiplier: float, init_std: float, bias: bool,
                 bias_multiplier: float = 1.0, bias_init_std: float = 0.0, generator: torch.Generator | None = None):
        super().__init__()
        self.multiplier, self.bias_multiplier = multiplier, bias_multiplier
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in, generator=generator) * init_std)
        self.bias = nn.Parameter(torch.randn(fan_out, generator=generator) * bias_init_std) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.multiplier * (x @ self.weight.T)
        return y if self.bias is None else y + self.bias_multiplier * self.bias

    def extra_repr(self) -> str:
        return (f"fan_in={self.weight.shape[1]}, fan_out={self.weight.shape[0]}, "
                f"multiplier={self.multiplier:.4g}, bias={self.bias is not None}")


def _generator(seed: int | None) -> torch.Generator | None:
    return None if seed is None else torch.Generator().manual_seed(seed)


def _layer(kind: str, fan_in: int, fan_out: int, *, position: Literal["input", "hidden", "output"], width: int,
           in_dim: int, sw: float, sb: float, bias: bool, g: torch.Generator | None) -> ScaledLinear:
    if kind == "sp":
        return ScaledLinear(fan_in, fan_out, multiplier=1.0, init_std=sw / math.sqrt(fan_in), bias=bias,
                            bias_init_std=sb, generator=g)
    if kind == "ntk":
        return ScaledLinear(fan_in, fan_out, multiplier=sw / math.sqrt(fan_in), init_std=1.0, bias=bias,
                            bias_multiplier=sb, bias_init_std=1.0, generator=g)
    multiplier = {"input": sw * math.sqrt(width / in_dim), "hidden": sw, "output": 1.0 / math.sqrt(width)}[position]
    # biases of the input and hidden layers train at eta*n (multiplier sqrt(n)); the output bias at eta
    bias_multiplier = 1.0 if position == "output" else math.sqrt(width)
    return ScaledLinear(fan_in, fan_out, multiplier=multiplier, init_std=1.0 / math.sqrt(width), bias=bias,
                        bias_multiplier=bias_multiplier, bias_init_std=sb / bias_multiplier, generator=g)


class MLP(nn.Module):
    """Fully connected network ``in_dim -> widths... -> out_dim`` in the chosen parametrization.

    ``weight_var`` (``sw^2``) and ``bias_var`` (``sb^2``) are the variances of the module docstring's table.
    """

    def __init__(self, in_dim: int, widths: Sequence[int], out_dim: int, *, activation: Activation = "relu",
                 parametrization: Parametrization = "sp", bias: bool = True, weight_var: float = 1.0,
                 bias_var: float = 0.0, output_multiplier: float = 1.0, seed: int | None = None):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if parametrization not in ("sp", "ntk", "mup"):
            raise ValueError(f"parametrization must be 'sp', 'ntk' or 'mup', got {parametrization!r}")
        widths = list(widths)
        if in_dim < 1 or out_dim < 1 or any(w < 1 for w in widths):
            raise ValueError(f"dimensions must be >= 1, got in_dim={in_dim}, widths={widths}, out_dim={out_dim}")
        if parametrization == "mup" and not widths:
            raise ValueError("muP needs at least one hidden layer")
        if not (weight_var > 0 and math.isfinite(weight_var)) or not (bias_var >= 0 and math.isfinite(bias_var)):
            raise ValueError(f"need weight_var > 0 and bias_var >= 0, got {weight_var}, {bias_var}")
        self.activation, self.parametrization = activation, parametrization
        self.output_multiplier = output_multiplier
        g = _generator(seed)
        dims = [in_dim] + widths
        width = max(widths) if widths else in_dim
        common = dict(width=width, in_dim=in_dim, sw=math.sqrt(weight_var), sb=math.sqrt(bias_var), bias=bias, g=g)
        self.hidden_layers = nn.ModuleList(
            _layer(parametrization, dims[i], dims[i + 1], position="input" if i == 0 else "hidden", **common)
            for i in range(len(widths)))
        self.readout = _layer(parametrization, dims[-1], out_dim, position="output" if widths else "input", **common)

    def features(self, x: Tensor) -> Tensor:
        """Activations of the last hidden layer (the input itself if there is none)."""
        act = _ACTIVATIONS[self.activation]
        h = x.flatten(1)
        for layer in self.hidden_layers:
            h = act(layer(h))
        return h

    def forward(self, x: Tensor) -> Tensor:
        return self.output_multiplier * self.readout(self.features(x))


class DeepLinear(nn.Module):
    """Product of linear maps ``W_L ... W_1 x`` with ``W_l ~ N(0, init_scale^2 / fan_in)``.

    Small ``init_scale`` gives the saddle-to-saddle dynamics of Saxe et al. 2014.
    """

    def __init__(self, dims: Sequence[int], *, init_scale: float = 1.0, bias: bool = False, seed: int | None = None):
        super().__init__()
        dims = list(dims)
        if len(dims) < 2 or any(d < 1 for d in dims):
            raise ValueError(f"dims needs at least two positive sizes, got {dims}")
        g = _generator(seed)
        self.layers = nn.ModuleList(
            ScaledLinear(dims[i], dims[i + 1], multiplier=1.0, init_std=init_scale / math.sqrt(dims[i]),
                         bias=bias, generator=g) for i in range(len(dims) - 1))

    def forward(self, x: Tensor) -> Tensor:
        h = x.flatten(1)
        for layer in self.layers:
            h = layer(h)
        return h

    def end_to_end(self) -> Tensor:
        """The product matrix ``W_L ... W_1`` (out x in), without biases."""
        product = self.layers[0].multiplier * self.layers[0].weight
        for layer in self.layers[1:]:
            product = layer.multiplier * layer.weight @ product
        return product


class RandomFeatures(nn.Module):
    """``f(x) = readout(phi(W x) / sqrt(N))`` with a frozen random ``W ~ N(0, 1/d)`` (a buffer) and
    a trainable linear readout initialised at zero (Rahimi & Recht 2007; Mei & Montanari 2019)."""

    def __init__(self, in_dim: int, num_features: int, out_dim: int = 1, *, activation: Activation = "relu",
                 seed: int | None = None):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if min(in_dim, num_features, out_dim) < 1:
            raise ValueError("in_dim, num_features and out_dim must be >= 1")
        self.activation = activation
        self.register_buffer("projection", torch.randn(num_features, in_dim, generator=_generator(seed)) / math.sqrt(in_dim))
        self.readout = nn.Linear(num_features, out_dim, bias=False)
        nn.init.zeros_(self.readout.weight)

    def features(self, x: Tensor) -> Tensor:
        return _ACTIVATIONS[self.activation](x.flatten(1) @ self.projection.T) / math.sqrt(self.projection.shape[0])

    def forward(self, x: Tensor) -> Tensor:
        return self.readout(self.features(x))


class SmallCNN(nn.Module):
    """Two 3x3 convolutions (width, 2*width), ReLU, global average pooling, linear classifier.

    Accepts images ``(N, C, H, W)`` or flat vectors ``(N, C*image_size**2)`` (e.g. the digits data).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16, *, image_size: int = 8,
                 seed: int | None = None):
        super().__init__()
        if seed is not None:
            state = torch.get_rng_state()
            torch.manual_seed(seed)
        self.in_channels, self.image_size = in_channels, image_size
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.classifier = nn.Linear(2 * width, num_classes)
        if seed is not None:
            torch.set_rng_state(state)

    def features(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.view(-1, self.in_channels, self.image_size, self.image_size)
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return h.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
