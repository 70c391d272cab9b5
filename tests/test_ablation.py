"""Ablation hooks change exactly what they target."""

from __future__ import annotations

import pytest
import torch

from interp_core.core.errors import OutOfRangeError
from interp_core.techniques.ablation import ablation_hooks, reference_activations

PROMPT = "The cat sat on the mat. The dog sat on the log."


def test_zero_head_ablation_zeroes_only_that_head(tiny_model):
    tokens = tiny_model.tokenize(PROMPT)
    hooks = ablation_hooks(tiny_model, [("head", 1, 2)], "zero")
    _, cache = tiny_model.run_with_cache(tokens, ["blocks.1.attn.hook_z"], hooks=hooks)
    _, clean = tiny_model.run_with_cache(tokens, ["blocks.1.attn.hook_z"])
    z, z0 = cache["blocks.1.attn.hook_z"], clean["blocks.1.attn.hook_z"]
    assert z[:, :, 2].abs().max() == 0
    torch.testing.assert_close(z[:, :, [0, 1, 3]], z0[:, :, [0, 1, 3]])
    assert (tiny_model.forward(tokens, hooks=hooks) - tiny_model.forward(tokens)).abs().max() > 1e-4


def test_mean_ablation_with_own_prompt_as_reference_is_position_mean(tiny_model):
    tokens = tiny_model.tokenize(PROMPT)
    ref = reference_activations(tiny_model, tokens, [("mlp", 0)])
    hooks = ablation_hooks(tiny_model, [("mlp", 0)], "mean", ref)
    _, cache = tiny_model.run_with_cache(tokens, ["blocks.0.hook_mlp_out"], hooks=hooks)
    out = cache["blocks.0.hook_mlp_out"]
    torch.testing.assert_close(out, ref["blocks.0.hook_mlp_out"].mean((0, 1), keepdim=True).expand_as(out))


def test_resample_ablation_with_identical_reference_changes_nothing(tiny_model):
    tokens = tiny_model.tokenize(PROMPT)
    batch = tokens.repeat(2, 1)
    ref = reference_activations(tiny_model, batch, [("head", 0, 1)])
    hooks = ablation_hooks(tiny_model, [("head", 0, 1)], "resample", ref)
    torch.testing.assert_close(tiny_model.forward(batch, hooks=hooks), tiny_model.forward(batch), atol=1e-5, rtol=1e-5)


def test_out_of_range_head(tiny_gpt2):
    with pytest.raises(OutOfRangeError, match="head"):
        ablation_hooks(tiny_gpt2, [("head", 0, 9)], "zero")
