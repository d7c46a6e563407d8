"""The empirical NTK on the model zoo (tests/zoo.py): equal to the explicit J J^T in float64, with each
parameter on the path the forward pass allows, or one clear error."""
import warnings

import numpy as np
import pytest
import torch

from theorylab.adapters import last_token
from theorylab.kernels import empirical_ntk, empirical_ntk_blocks

from test_kernels_ntk_paths import explicit_blocks
from zoo import ZOO

pytest.importorskip("transformers")

# the output that defines the kernel, parameters that take the layer path, parameters that cannot
SETTINGS = {
    "resnet": (None, ["conv1.weight", "layer2.downsample.0.weight", "fc.weight"], ["bn1.weight"]),
    "gpt2": (last_token, ["transformer.h.0.mlp.c_fc.weight", "transformer.h.1.attn.c_proj.weight"],
             ["transformer.wte.weight (tied: lm_head.weight)", "transformer.wpe.weight"]),
    "vit": (None, ["patch_embed.weight", "blocks.0.attn.qkv.weight", "head.weight"], ["cls_token", "pos_embed"]),
    "lstm": (None, ["head.weight"], ["rnn.weight_hh_l0"]),
    "gru": (None, ["head.weight"], ["rnn.weight_hh_l0"]),
}


def _inputs(case):
    batch = case.batch
    if isinstance(batch, dict):
        return {"input_ids": batch["input_ids"][:4]}
    return batch[0][:4]


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_zoo_ntk_equals_the_explicit_jacobian_product(name):
    case = ZOO[name]()
    case.model.eval()  # the kernel is measured in eval mode (BatchNorm on its running statistics); so is the reference
    output, on_layer_path, on_jacobian_path = SETTINGS[name]
    x = _inputs(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the loop fallback's one-line note (GPT-2, RNNs)
        result = empirical_ntk_blocks(case.model, x, output=output, block_size=3)
    reference = explicit_blocks(case.model, x, output=output or (lambda out: out))
    np.testing.assert_allclose(result.blocks, reference.numpy(), rtol=1e-10, atol=1e-10 * float(reference.abs().max()))
    paths = result.meta["paths"]
    for parameter in on_layer_path:
        assert paths[parameter] in ("kronecker", "layer-jacobian"), (parameter, paths[parameter])
    for parameter in on_jacobian_path:
        assert paths[parameter] in ("jacobian", "jacobian-loop"), (parameter, paths[parameter])


def test_zoo_dropout_model_in_train_mode_is_refused_clearly():
    case = ZOO["mlp_dropout"]()
    with pytest.raises(ValueError, match="dropout in train mode"):
        empirical_ntk(case.model, case.batch[0], mode=case.mode)
    assert np.isfinite(empirical_ntk(case.model, case.batch[0], mode="eval").kernel).all()
