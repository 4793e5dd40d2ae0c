"""Components streamed one tensor at a time are the same models from_pretrained loads, in every dtype."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel

from studio.generation.loading import _read_model_index, _stream_component

REFERENCE_CLASSES = {"unet": UNet2DConditionModel, "text_encoder": CLIPTextModel, "vae": AutoencoderKL}


@pytest.mark.parametrize("component", sorted(REFERENCE_CLASSES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_streamed_component_equals_from_pretrained(tiny_model_dir, component, dtype) -> None:
    streamed = _stream_component(tiny_model_dir, component, _read_model_index(tiny_model_dir), None, dtype)
    reference = REFERENCE_CLASSES[component].from_pretrained(tiny_model_dir, subfolder=component, dtype=dtype)
    assert streamed is not None
    assert type(streamed) is type(reference)
    assert not streamed.training
    ours, theirs = streamed.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert ours[name].dtype == tensor.dtype, name
        assert torch.equal(ours[name], tensor), name
    # Buffers outside the state dict (CLIP's position ids) are made by the model itself, as from_pretrained's.
    for (name, ours_buffer), (_, their_buffer) in zip(streamed.named_buffers(), reference.named_buffers(), strict=True):
        assert torch.equal(ours_buffer, their_buffer), name
    assert _config(streamed) == _config(reference)


def _config(model) -> dict:
    if isinstance(model, CLIPTextModel):
        # Where from_pretrained read it from is not part of the model.
        return {key: value for key, value in model.config.to_dict().items() if key != "_name_or_path"}
    return dict(model.config)


def test_streamed_text_encoder_encodes_like_from_pretrained(tiny_model_dir) -> None:
    streamed = _stream_component(tiny_model_dir, "text_encoder", _read_model_index(tiny_model_dir), None, torch.float32)
    reference = CLIPTextModel.from_pretrained(tiny_model_dir, subfolder="text_encoder")
    ids = torch.tensor([[0, 5, 7, 9, 1]])
    with torch.inference_mode():
        assert torch.equal(streamed(ids).last_hidden_state, reference(ids).last_hidden_state)


def test_a_unet_file_that_does_not_match_its_config_falls_back(tiny_model_dir, tmp_path) -> None:
    """Tensors the config does not describe (another layout, a converted checkpoint): from_pretrained decides."""
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    config_path = copy / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    config["cross_attention_dim"] = config["cross_attention_dim"] * 2
    config_path.write_text(json.dumps(config))
    assert _stream_component(copy, "unet", _read_model_index(copy), None, torch.float32) is None


def test_no_single_file_for_the_variant_falls_back(tiny_model_dir) -> None:
    index = _read_model_index(tiny_model_dir)
    assert _stream_component(tiny_model_dir, "unet", index, "fp16", torch.bfloat16) is None


def test_a_component_of_another_library_is_not_streamed(tiny_model_dir) -> None:
    index = dict(_read_model_index(tiny_model_dir), vae=["some_library", "SomeAutoencoder"])
    assert _stream_component(tiny_model_dir, "vae", index, None, torch.float32) is None
