"""The typed generation record against the provenance schema, and few-step (turbo) models told by their config."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from PIL import Image

from metadata.token import SCHEMA_DIR
from studio.generation import Engine, GenerationRecord, GenerationRequest


def _generation_schema() -> dict:
    schema = json.loads((SCHEMA_DIR / "token-metadata.schema.json").read_text(encoding="utf-8"))
    return {"$ref": "#/$defs/generation", "$defs": schema["$defs"]}


def test_record_fields_and_the_schema_properties_agree():
    schema = _generation_schema()["$defs"]["generation"]
    fields = [item.name for item in dataclasses.fields(GenerationRecord)]

    assert set(fields) == set(schema["properties"])  # a field added to one only fails here
    assert set(schema["required"]) <= set(fields)


def test_a_real_text_to_image_and_img2img_record_validate_against_the_schema(engine):
    validator = Draft202012Validator(_generation_schema())
    first = engine.generate(GenerationRequest(prompt="a red fox", seed=3, negative_prompt="blur"))
    moved = engine.generate(
        GenerationRequest(prompt="a blue fox", seed=3, init_image=first.image, init_image_cid="bafyinit", strength=0.5)
    )

    for result in (first, moved):
        document = result.generation.as_schema_dict()
        assert list(validator.iter_errors(document)) == []
        assert list(document) == [item.name for item in dataclasses.fields(GenerationRecord)]
        assert document == result.record
    assert moved.generation.init_from == "pixels"
    assert moved.generation.init_image == "ipfs://bafyinit"


def test_as_schema_dict_is_a_copy():
    record_fields = {item.name: None for item in dataclasses.fields(GenerationRecord)}
    record = GenerationRecord(**{**record_fields, "cpu_optimizations": ("a",), "libraries": {"torch": "2"}})
    document = record.as_schema_dict()
    document["cpu_optimizations"].append("b")
    document["libraries"]["torch"] = "3"

    assert record.cpu_optimizations == ("a",)
    assert record.libraries == {"torch": "2"}


def _copy_with_spacing(source: Path, target: Path, spacing: str) -> Path:
    shutil.copytree(source, target)
    config_path = target / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["timestep_spacing"] = spacing
    config_path.write_text(json.dumps(config), encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def renamed_models(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny model under names without 'turbo': as shipped (trailing spacing) and with leading spacing."""
    root = tmp_path_factory.mktemp("renamed")
    return {
        "trailing": _copy_with_spacing(tiny_model_dir, root / "tiny-distilled", "trailing"),
        "leading": _copy_with_spacing(tiny_model_dir, root / "tiny-full-steps", "leading"),
    }


def test_a_model_whose_scheduler_has_trailing_timesteps_gets_turbo_defaults_whatever_its_name(
    renamed_models, tiny_model_settings
):
    settings = tiny_model_settings.model_copy(update={"model_id": str(renamed_models["trailing"])})
    engine = Engine(settings)
    text = engine.generate(GenerationRequest(prompt="a fox", seed=1))
    moved = engine.generate(GenerationRequest(prompt="a fox", seed=1, init_image=text.image, strength=0.5))

    assert (text.generation.steps, text.generation.guidance_scale) == (1, 0.0)
    assert moved.generation.steps == 2  # one denoising step at strength 0.5


def test_a_model_with_leading_timesteps_and_no_turbo_in_its_name_gets_full_step_defaults(
    renamed_models, tiny_model_settings
):
    settings = tiny_model_settings.model_copy(update={"model_id": str(renamed_models["leading"])})
    engine = Engine(settings)
    defaults = engine.generate(GenerationRequest(prompt="a fox", seed=1))
    init = Image.new("RGB", (64, 64), (10, 120, 200))
    moved = engine.generate(GenerationRequest(prompt="a fox", seed=1, init_image=init, strength=0.5))

    assert (defaults.generation.steps, defaults.generation.guidance_scale) == (25, 7.5)
    assert (moved.generation.steps, moved.generation.guidance_scale) == (25, 7.5)


def test_the_model_id_is_the_fallback_when_the_config_does_not_say_turbo(tiny_model_dir, tiny_model_settings, tmp_path):
    named_turbo = _copy_with_spacing(tiny_model_dir, tmp_path / "my-turbo-model", "leading")
    settings = tiny_model_settings.model_copy(update={"model_id": str(named_turbo)})
    result = Engine(settings).generate(GenerationRequest(prompt="a fox", seed=1))

    assert (result.generation.steps, result.generation.guidance_scale) == (1, 0.0)
