"""A model zoo small enough for CPU tests: the architectures researchers study, built the way their
libraries build them.

* ``resnet``: a ResNet with BasicBlocks and BatchNorm (the torchvision layout), 3 x 8 x 8 images;
* ``gpt2``: HuggingFace ``GPT2LMHeadModel`` from a config with random weights: scaled dot-product
  attention (``attn_implementation="sdpa"``) and tied input/output embeddings; dict batches;
* ``vit``: a Vision Transformer with fused attention (``F.scaled_dot_product_attention``, as timm's
  ``fused_attn``), a ``(1, 1, d)`` class token and position embeddings (timm itself imports torchvision,
  which has no CPU wheel here);
* ``lstm``, ``gru``: sequence classifiers reading the last hidden state;
* ``mlp_dropout``: an MLP with LayerNorm and dropout, analysed in train mode.

Every entry is a :class:`Case`: the model in float64, a loss, data (a list of uneven batches), the
layers for activation measures, the classifier module (or None) and the measuring mode.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from theorylab.adapters import causal_lm_loss


@dataclass
class Case:
    name: str
    model: nn.Module
    loss_fn: Callable
    data: list
    layers: list[str]
    classifier: str | None
    mode: str = "eval"
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def batch(self):
        """All the data as one batch."""
        first = self.data[0]
        if isinstance(first, dict):
            return {k: torch.cat([b[k] for b in self.data]) for k in first}
        return torch.cat([x for x, _ in self.data]), torch.cat([y for _, y in self.data])


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _split(x: torch.Tensor, y: torch.Tensor, sizes=(4, 3)) -> list:
    out, start = [], 0
    for size in sizes:
        out.append((x[start:start + size], y[start:start + size]))
        start += size
    return out


class BasicBlock(nn.Module):
    def __init__(self, channels_in: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = (nn.Sequential(nn.Conv2d(channels_in, channels, 1, stride, bias=False),
                                         nn.BatchNorm2d(channels)) if stride != 1 or channels_in != channels else None)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, classes: int = 3, width: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = BasicBlock(width, width, 1)
        self.layer2 = BasicBlock(width, 2 * width, 2)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x)))))
        return self.fc(x.mean((2, 3)))


def resnet() -> Case:
    torch.manual_seed(0)
    model = ResNet().double()
    model.train()
    g = _generator(1)
    x = torch.randn(7, 3, 8, 8, generator=g, dtype=torch.float64)
    with torch.no_grad():
        model(x)  # BatchNorm running statistics that are not the initial ones
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    return Case("resnet", model, nn.CrossEntropyLoss(), _split(x, y), ["layer1", "layer2.bn2"], "fc")


def gpt2() -> Case:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=23, n_positions=8, bos_token_id=0,
                        eos_token_id=0, attn_implementation="sdpa")
    model = GPT2LMHeadModel(config).double().eval()
    g = _generator(2)
    ids = torch.randint(0, 23, (5, 6), generator=g)
    data = [{"input_ids": ids[:3], "labels": ids[:3]}, {"input_ids": ids[3:], "labels": ids[3:]}]
    return Case("gpt2", model, causal_lm_loss, data, ["transformer.h.0.mlp.act", "transformer.h.1"], None)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # the fused kernel, as timm's fused_attn
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, image: int = 8, patch: int = 4, dim: int = 16, depth: int = 2, heads: int = 2,
                 classes: int = 3):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(tokens))[:, 0])


def vit() -> Case:
    torch.manual_seed(0)
    model = ViT().double().eval()
    g = _generator(3)
    x = torch.randn(7, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 2, 1, 0, 0])
    return Case("vit", model, nn.CrossEntropyLoss(), _split(x, y), ["blocks.0.mlp.1", "blocks.1"], "head")


class RecurrentClassifier(nn.Module):
    def __init__(self, kind: str, features: int = 3, hidden: int = 5, classes: int = 3):
        super().__init__()
        self.rnn = getattr(nn, kind)(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def _recurrent(kind: str) -> Case:
    torch.manual_seed(0)
    model = RecurrentClassifier(kind).double().eval()
    g = _generator(4)
    x = torch.randn(7, 4, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 1])
    return Case(kind.lower(), model, nn.CrossEntropyLoss(), _split(x, y), ["rnn", "head"], "head")


def lstm() -> Case:
    return _recurrent("LSTM")


def gru() -> Case:
    return _recurrent("GRU")


def mlp_dropout() -> Case:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.LayerNorm(8), nn.GELU(), nn.Dropout(0.25), nn.Linear(8, 3)).double()
    g = _generator(5)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 1])
    return Case("mlp_dropout", model, nn.CrossEntropyLoss(), _split(x, y), ["2", "3"], "4", mode="train")


ZOO: dict[str, Callable[[], Case]] = {"resnet": resnet, "gpt2": gpt2, "vit": vit, "lstm": lstm, "gru": gru,
                                      "mlp_dropout": mlp_dropout}
