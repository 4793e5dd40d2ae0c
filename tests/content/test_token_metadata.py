"""Token and collection metadata: schema, canonical form, provenance chain, injection and size limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from metadata.cid import cid_for_bytes, parse_cid, raw_cid_digest
from metadata.collection import build_collection_metadata
from metadata.errors import ContentTooLargeError, MetadataValidationError
from metadata.token import Attribute, build_provenance, build_token_metadata, canonical_json, validate_token_metadata

IMAGE = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
PREVIOUS = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
GENERATION = {
    "model_id": "stabilityai/sd-turbo",
    "model_revision": None,
    "weights_sha256": None,
    "pipeline": "StableDiffusionImg2ImgPipeline",
    "scheduler": "EulerDiscreteScheduler",
    "prompt": "a lighthouse at dusk, <lora:seascape:0.8>",
    "negative_prompt": "",
    "steps": 2,
    "guidance_scale": 0.0,
    "seed": 42,
    "width": 512,
    "height": 512,
    "strength": 0.5,
    "init_image": f"ipfs://{IMAGE}",
    "preset": "fast",
    "device": "cpu",
    "dtype": "bfloat16",
    "libraries": {"diffusers": "0.42.1", "torch": "2.13.0"},
}


def token(**overrides):
    arguments = {
        "name": "Living #1",
        "description": "A lighthouse that *changes* with the tides.",
        "image_cid": IMAGE,
        "attributes": [
            Attribute("Mood", "calm"),
            Attribute("Tide", 1.4, display_type="number", max_value=5),
            Attribute("Evolved", 1764064800, display_type="date"),
        ],
        "provenance": build_provenance(
            version=1,
            previous=PREVIOUS,
            generation=GENERATION,
            feed_snapshot=None,
            created_at=datetime(2026, 11, 25, 10, 0, tzinfo=UTC),
        ),
        "external_url": "https://studio.example/tokens/1",
        "background_color": "#0a0b0c",
    }
    arguments.update(overrides)
    return build_token_metadata(**arguments)


def test_token_metadata_follows_opensea_and_carries_provenance():
    document = token()
    assert document["image"] == f"ipfs://{IMAGE}"
    assert document["background_color"] == "0a0b0c"
    assert document["attributes"][1] == {"trait_type": "Tide", "value": 1.4, "display_type": "number", "max_value": 5}
    assert document["provenance"]["previous"] == f"ipfs://{PREVIOUS}"
    assert document["provenance"]["created_at"] == "2026-11-25T10:00:00Z"


def test_canonical_form_is_stable_and_gives_a_raw_block_cid():
    first = canonical_json(token())
    reordered = json.loads(first)
    reordered = dict(reversed(list(reordered.items())))
    assert canonical_json(reordered) == first
    assert b": " not in first
    assert "é".encode() in canonical_json({"name": "Pièce é"})
    cid = cid_for_bytes(first)
    assert cid.startswith("bafkrei")
    assert len(raw_cid_digest(cid)) == 32
    assert parse_cid(cid).codec_name == "raw"
    with pytest.raises(MetadataValidationError, match="NaN"):
        canonical_json({"value": float("nan")})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "<script>alert(1)</script>"),
        ("description", 'Look <img src=x onerror="steal()">'),
        ("description", "[click me](javascript:alert(1))"),
        ("description", "data:text/html;base64,PHNjcmlwdD4="),
        ("name", "Living\u202e#1"),
        ("name", "bell\x07"),
    ],
)
def test_markup_and_script_in_rendered_text_are_refused(field, value):
    with pytest.raises(MetadataValidationError, match=field):
        token(**{field: value})


def test_plain_text_with_angle_brackets_and_prompts_with_lora_tags_are_fine():
    document = token(name="Tide < 3m", description="I <3 the sea")
    assert document["name"] == "Tide < 3m"
    assert "<lora:" in document["provenance"]["generation"]["prompt"]


def test_injection_in_attributes_is_refused():
    with pytest.raises(MetadataValidationError, match="attributes/0/value"):
        token(attributes=[Attribute("Mood", "<iframe src=//evil>")])


def test_schema_errors_name_the_field():
    with pytest.raises(MetadataValidationError, match="name"):
        token(name="x" * 201)
    with pytest.raises(MetadataValidationError, match="attributes/0/value"):
        token(attributes=[{"trait_type": "Born", "value": "yesterday", "display_type": "date"}])
    with pytest.raises(MetadataValidationError, match="external_url"):
        token(external_url="ftp://example.org")
    with pytest.raises(MetadataValidationError, match="image"):
        token(image_cid="not-a-cid")
    document = token()
    document["provenance"]["generation"].pop("seed")
    with pytest.raises(MetadataValidationError, match=r"provenance/generation.*seed"):
        validate_token_metadata(document)


def test_provenance_chain_rules():
    mint = build_provenance(version=0, previous=None, generation=GENERATION, created_at="2026-11-25T10:00:00Z")
    assert token(provenance=mint)["provenance"]["previous"] is None
    broken = build_provenance(version=2, previous=None, generation=GENERATION, created_at="2026-11-25T10:00:00Z")
    with pytest.raises(MetadataValidationError, match="previous"):
        token(provenance=broken)


def test_metadata_must_fit_one_raw_block():
    many = [Attribute(f"trait {i}", "v" * 500) for i in range(100)]
    with pytest.raises(ContentTooLargeError, match="262,144"):
        token(
            attributes=many,
            description="d" * 5000,
            provenance={
                **token()["provenance"],
                "generation": {**GENERATION, "libraries": {f"lib{i}": "x" * 100 for i in range(2000)}},
            },
        )


def test_collection_metadata_erc7572():
    document = build_collection_metadata(
        name="Living Tides",
        description="Lighthouses that follow the sea.",
        image_cid=IMAGE,
        banner_image_cid=IMAGE,
        external_link="https://studio.example",
        seller_fee_basis_points=500,
        fee_recipient="0x" + "ab" * 20,
    )
    assert document["image"] == f"ipfs://{IMAGE}"
    assert document["seller_fee_basis_points"] == 500
    with pytest.raises(MetadataValidationError, match="fee_recipient"):
        build_collection_metadata(name="x", description="", image_cid=IMAGE, seller_fee_basis_points=100)
    with pytest.raises(MetadataValidationError, match="seller_fee_basis_points"):
        build_collection_metadata(name="x", description="", image_cid=IMAGE, seller_fee_basis_points=10_001)
    with pytest.raises(MetadataValidationError, match="description"):
        build_collection_metadata(name="x", description="<script>", image_cid=IMAGE)
