"""`python -m metadata verify` against a real chain, the real gateway and the real c2pa reader: a token
minted and evolved three times verifies, and each kind of tampering is caught and named."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from contracts.cid import raw_cid_of
from metadata.credentials import CredentialsOptions, ManifestFields, load_signing_identity, sign_png
from metadata.ipfs_reader import split_ipfs_uri
from metadata.replay import replay_token_version, replay_version
from metadata.verify import ChainEvent, FetchFailed, GatewaySource, TokenReport, history_failures, verify_token
from studio.services import drafts
from studio.services.batch_minting import DraftToMint, mint_drafts
from studio.services.publishing import pin_content
from studio.services.studio import Studio
from tests.fixtures.credentials import Gateway, Token, evolve, evolve_with_image, mint, next_png
from tests.fixtures.paths import REPO_ROOT

RECIPIENT = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"


def verify(studio: Studio, gateway: Gateway, token: Token, **kw: Any) -> TokenReport:
    source = GatewaySource(gateway.url, timeout_s=10)
    try:
        return verify_token(studio.chain.rpc_url, studio.chain.contract_address, token.token_id, source, **kw)
    finally:
        source.close()


def run_cli(studio: Studio, gateway: Gateway, token: Token, *extra: str) -> subprocess.CompletedProcess[str]:
    """`python -m metadata verify` as a collector runs it, in its own process."""
    chain = studio.chain
    args = ["--rpc", chain.rpc_url, "--contract", chain.contract_address, "--token", str(token.token_id)]
    return subprocess.run(
        [sys.executable, "-m", "metadata", "verify", *args, "--gateway", gateway.url, *extra],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def codes(report: TokenReport, version: int) -> set[str]:
    return {f.code for f in report.versions[version].failures}


@pytest.fixture
def evolved(studio: Studio) -> Token:
    token = mint(studio)
    for _ in range(3):
        evolve(studio, token)
    return token


def test_a_token_minted_and_evolved_three_times_verifies(studio: Studio, gateway: Gateway, evolved: Token) -> None:
    report = verify(studio, gateway, evolved)
    assert report.ok, report.to_text()
    assert [v.version for v in report.versions] == [0, 1, 2, 3]
    assert report.trust_anchor_source == "collection"
    assert all(v.credentials is not None and v.credentials.state == "trusted" for v in report.versions)
    assert report.versions[3].credentials is not None
    assert report.versions[3].credentials.manifests == 4  # the whole chain back to the mint

    # The command a collector runs: exit 0 and the documented JSON report.
    done = run_cli(studio, gateway, evolved, "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    document = json.loads(done.stdout)
    assert document["schema"] == "living-nft-verify/1"
    assert document["ok"] is True
    assert [v["credentials"]["state"] for v in document["versions"]] == ["trusted"] * 4


def test_a_replaced_image_is_a_cid_mismatch(studio: Studio, gateway: Gateway, evolved: Token) -> None:
    gateway.replaced[evolved.versions[2].image_cid] = studio.store.cat(evolved.versions[1].image_cid)
    report = verify(studio, gateway, evolved)
    assert not report.ok
    assert codes(report, 2) == {"image.cid_mismatch"}
    assert all(report.versions[v].ok for v in (0, 1))


def test_a_stripped_manifest_is_missing_credentials(studio: Studio, gateway: Gateway) -> None:
    token = mint(studio)
    evolve(studio, token)
    png, record = next_png(studio, studio.store.cat(token.versions[-1].image_cid), "unsigned")
    evolve_with_image(studio, token, png, record)  # the PNG without its manifest
    evolve(studio, token)
    report = verify(studio, gateway, token)
    assert codes(report, 2) == {"credentials.missing"}
    # The next version's parent is a manifest the stripped image no longer carries.
    assert "credentials.parent" in codes(report, 3)

    done = run_cli(studio, gateway, token)
    assert done.returncode == 1
    assert "version 2: FAILED" in done.stdout
    assert "credentials.missing" in done.stdout


def test_a_manifest_signed_by_another_ca_is_untrusted(studio: Studio, gateway: Gateway, tmp_path: Any) -> None:
    token = mint(studio)
    png, record = next_png(studio, studio.store.cat(token.versions[-1].image_cid), "forged")
    forger = load_signing_identity(CredentialsOptions(folder=tmp_path / "forger"))
    fields = ManifestFields(
        title="Weather (version 1)",
        generation=record,
        version=1,
        previous_metadata_cid=token.versions[0].metadata_cid,
        chain_id=studio.chain.chain_id,
        contract=studio.chain.contract_address,
        token_id=token.token_id,
    )
    parent = studio.store.cat(token.versions[0].image_cid)
    evolve_with_image(studio, token, sign_png(png, fields, forger, parent_png=parent), record)
    report = verify(studio, gateway, token)
    assert codes(report, 1) == {"credentials.untrusted"}
    assert report.versions[1].credentials is not None
    assert report.versions[1].credentials.state == "valid"
    # Given the forger's CA as anchor, it is the studio's versions that are untrusted.
    forged_view = verify(studio, gateway, token, trust_anchor_pem=forger.trust_anchor_pem)
    assert codes(forged_view, 0) == {"credentials.untrusted"}
    assert forged_view.versions[1].ok


def test_a_broken_previous_link_is_named(studio: Studio, gateway: Gateway, evolved: Token) -> None:
    evolve(studio, evolved, previous=evolved.versions[1].metadata_cid)  # version 4 links to version 1
    report = verify(studio, gateway, evolved)
    assert "provenance.previous" in codes(report, 4)
    assert "credentials.parent" in codes(report, 4)  # signed over version 1's image, not version 3's
    assert all(report.versions[v].ok for v in range(4))


def test_a_missing_feed_snapshot_is_named(studio: Studio, gateway: Gateway, evolved: Token) -> None:
    never_pinned = raw_cid_of(b"a snapshot nobody pinned")
    evolve(studio, evolved, feed_snapshot_cid=never_pinned)
    report = verify(studio, gateway, evolved)
    assert codes(report, 4) == {"feed_snapshot.unavailable"}


def test_a_skipped_version_is_named(studio: Studio, gateway: Gateway, evolved: Token) -> None:
    # The contract numbers versions itself and refuses gaps; metadata claiming to skip one is caught.
    evolve(studio, evolved, version=5)
    report = verify(studio, gateway, evolved)
    assert "provenance.version" in codes(report, 4)
    assert all(report.versions[v].ok for v in range(4))


def test_a_gap_in_the_events_is_named() -> None:
    events = [ChainEvent(v, raw_cid_of(bytes([v])), 10 + v, "0x") for v in (0, 1, 3)]
    assert [f.code for f in history_failures(events)] == ["history.gap"]
    assert [f.code for f in history_failures([])] == ["history.empty"]
    assert history_failures(events[:2]) == []


def test_replay_of_a_tiny_model_version_is_byte_identical(studio: Studio, gateway: Gateway, evolved: Token) -> None:
    report = verify(studio, gateway, evolved)
    source = GatewaySource(gateway.url, timeout_s=10)
    try:
        for version in (0, 2):  # text-to-image, and img2img from the previous version's signed PNG
            replay = replay_token_version(report, source, version, studio.settings.model)
            assert replay.ok, replay.failures
            assert replay.exact_expected
            assert replay.identical
            assert replay.pixel_max_diff == 0
        report.replay = replay
        assert report.ok
        assert report.to_json()["replay"]["identical"] is True

        # Another seed in the record: same machine, same model, different pixels: named as a failure.
        metadata = json.loads(studio.store.cat(evolved.versions[2].metadata_cid))
        record = {**metadata["provenance"]["generation"], "seed": 6}
        wrong = replay_version(
            2,
            record,
            studio.store.cat(evolved.versions[2].image_cid),
            studio.store.cat(evolved.versions[1].image_cid),
            studio.settings.model,
        )
        assert wrong.exact_expected
        assert not wrong.identical
        assert wrong.pixel_max_diff
        assert "not identical" in wrong.failures[0]
    finally:
        source.close()


def test_hostile_content_fails_one_version_not_the_verifier(studio: Studio, gateway: Gateway, evolved: Token) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000  # json.loads would overflow the C stack on this
    cid = pin_content(studio, deep, name="deep.json", content_type="application/json")
    studio.chain.client.evolve(evolved.token_id, cid, 3)
    report = verify(studio, gateway, evolved)
    assert codes(report, 4) == {"metadata.invalid"}
    assert "nests" in report.versions[4].failures[0].message
    assert all(report.versions[v].ok for v in range(4))

    # An answer larger than allowed is refused before it is all read.
    source = GatewaySource(gateway.url, timeout_s=10)
    try:
        with pytest.raises(FetchFailed, match="larger than"):
            source.cat(evolved.versions[0].image_cid, max_bytes=1000)
    finally:
        source.close()


def test_a_drop_token_verifies_through_its_folder_and_a_lying_folder_is_named(studio: Studio, gateway: Gateway) -> None:
    """A token of a drop points into the drop's folder (ipfs://<folder>/<id>.json): the verifier walks the
    folder's blocks, checked against the folder's CID, to the file its MetadataSet event names."""
    items = [
        DraftToMint(drafts.create_draft(studio, prompt=f"dune {seed}", seed=seed, width=64, height=64).draft.id, name)
        for seed, name in ((1, "Dune #1"), (2, "Dune #2"))
    ]
    outcome = mint_drafts(studio, items, recipient=RECIPIENT)
    token = Token(outcome.tokens[1].token_id, [])
    folder, path = split_ipfs_uri(studio.chain.client.token_uri(token.token_id))
    assert path == f"{token.token_id}.json"

    report = verify(studio, gateway, token)
    assert report.ok, report.to_text()
    assert report.token_uri == f"ipfs://{folder}/{path}"

    gateway.replaced[folder] = b"\x12\x00"  # a dag-pb block of another folder, or none at all
    lied = verify(studio, gateway, token)
    assert "token_uri.cid_mismatch" in {failure.code for failure in lied.failures}
