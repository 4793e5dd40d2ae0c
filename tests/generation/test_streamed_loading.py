"""The UNet streamed one tensor at a time is the same model from_pretrained loads, in every dtype."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from diffusers import UNet2DConditionModel

from studio.generation.loading import _stream_unet


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_streamed_unet_equals_from_pretrained(tiny_model_dir, dtype) -> None:
    streamed = _stream_unet(tiny_model_dir, None, dtype)
    reference = UNet2DConditionModel.from_pretrained(tiny_model_dir, subfolder="unet", dtype=dtype)
    assert streamed is not None
    assert not streamed.training
    ours, theirs = streamed.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert ours[name].dtype == tensor.dtype, name
        assert torch.equal(ours[name], tensor), name
    assert dict(streamed.config) == dict(reference.config)


def test_a_unet_file_that_does_not_match_its_config_falls_back(tiny_model_dir, tmp_path) -> None:
    """Tensors the config does not describe (another layout, a converted checkpoint): from_pretrained decides."""
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    config_path = copy / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    config["cross_attention_dim"] = config["cross_attention_dim"] * 2
    config_path.write_text(json.dumps(config))
    assert _stream_unet(copy, None, torch.float32) is None


def test_no_single_file_for_the_variant_falls_back(tiny_model_dir) -> None:
    assert _stream_unet(tiny_model_dir, "fp16", torch.bfloat16) is None
