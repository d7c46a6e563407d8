"""Model adapters: what a model returns, and the losses and output selections of language models.

theorylab analyses any ``nn.Module`` whose output, after an *output adapter*, is a tensor.  The
default adapter, :func:`model_output`, accepts

* a tensor;
* an object with a ``logits`` attribute (a HuggingFace ``ModelOutput``, timm/torchvision heads
  return tensors already) or a dict with a ``"logits"`` key;
* a tuple or list, whose first element is taken (RNNs' ``(output, state)`` style).

Pass ``output=`` to choose something else, for example ``output=lambda out:
out.last_hidden_state[:, 0]`` for a BERT [CLS] feature, or :func:`last_token` to take a language
model's logits at the last position (the empirical NTK of a language model then has ``V`` outputs
per sequence, not ``T V``).

:func:`causal_lm_loss` is the next-token cross-entropy a HuggingFace causal language model
computes from ``labels`` (shifted by one, ``-100`` ignored, mean over scored tokens);
:func:`token_cross_entropy` the unshifted one (masked LM, token classification).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

OutputFn = Callable[[Any], Tensor]

#: the label that HuggingFace losses skip
IGNORE_INDEX = -100


def model_output(out: Any) -> Tensor:
    """The tensor a model's output stands for (see the module docstring), or a clear error."""
    if isinstance(out, Tensor):
        return out
    logits = out.get("logits") if isinstance(out, Mapping) else getattr(out, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise ValueError(f"the model returned a {type(out).__name__}, which holds no tensor theorylab can use; "
                     "pass output=<function of the model output returning a tensor>, "
                     "e.g. output=lambda out: out.last_hidden_state")


def resolve_output(output: OutputFn | None) -> OutputFn:
    """``output`` applied after :func:`model_output`'s unwrapping, checked to return a tensor."""
    if output is None:
        return model_output
    if not callable(output):
        raise ValueError(f"output must be a function of the model output, got {type(output).__name__}")

    def adapted(out: Any) -> Tensor:
        value = output(out)
        if not isinstance(value, Tensor):
            raise ValueError(f"output= returned a {type(value).__name__}, not a tensor")
        return value

    return adapted


def last_token(out: Any) -> Tensor:
    """The logits at the last sequence position, ``(B, V)`` from ``(B, T, V)``."""
    logits = model_output(out)
    if logits.dim() != 3:
        raise ValueError(f"last_token expects (batch, tokens, vocabulary) logits, got shape {tuple(logits.shape)}")
    return logits[:, -1, :]


def token_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the tokens whose label is not -100: ``(B, T, V)`` logits, ``(B, T)`` labels."""
    if logits.dim() < 2 or labels.shape != logits.shape[:-1]:
        raise ValueError(f"logits (..., V) and labels (...) must agree, got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    if not bool((labels != IGNORE_INDEX).any()):
        raise ValueError("every label is -100: no token is scored")
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                             ignore_index=IGNORE_INDEX)


def causal_lm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Next-token cross-entropy: position ``t`` predicts ``labels[t + 1]``; -100 is ignored.

    Equals the ``loss`` a HuggingFace ``...ForCausalLM`` returns when called with the same
    ``labels`` (the labels are shifted inside, so pass ``labels = input_ids``).
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(f"expected (batch, tokens, vocabulary) logits and (batch, tokens) labels, got "
                         f"{tuple(logits.shape)} and {tuple(labels.shape)}")
    return token_cross_entropy(logits[:, :-1, :], labels[:, 1:])
