"""Pinning backends against their stand-ins (real HTTP on 127.0.0.1), and the Pinner's CID check."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import SecretStr

from metadata.cid import cid_for_bytes, cid_for_directory
from metadata.errors import (
    CIDMismatchError,
    ContentTooLargeError,
    PinningAuthError,
    PinningQuotaError,
    PinningUnavailableError,
)
from metadata.pinning import LocalPinning, Pinner, RetryPolicy, create_pinner
from studio.config import IpfsSettings
from studio.services.options import pinner_options

METADATA = json.dumps({"name": "Living #7", "image": "ipfs://bafy/7.png"}, separators=(",", ":")).encode()


def test_pinata_file_upload_uses_v3_public_and_matches_local_cid(pinata_standin):
    result = pinata_standin.backend().pin_bytes(METADATA, name="7.json", expected_cid=cid_for_bytes(METADATA))
    assert result.cid == cid_for_bytes(METADATA)
    assert (result.backend, result.size, result.name) == ("pinata", len(METADATA), "7.json")
    [request] = pinata_standin.requests
    assert request["endpoint"] == "/v3/files"
    assert request["network"] == "public"


def test_pinata_folder_upload_sends_relative_names(pinata_standin, vector_data, vectors):
    result = pinata_standin.backend().pin_directory(vector_data / "dir3")
    assert result.cid == next(v["v1"] for k, v in vectors["directories"].items() if k.startswith("dir3 ("))
    [request] = pinata_standin.requests
    assert request["names"] == ["dir3/1.json", "dir3/2.json", "dir3/cover.png"]
    assert request["options"] == {"cidVersion": 1}


def test_pinata_bad_jwt_is_an_auth_error_without_the_secret(pinata_standin):
    backend = pinata_standin.backend(jwt="wrong-secret-jwt")
    with pytest.raises(PinningAuthError, match="STUDIO_IPFS__PINATA_JWT") as caught:
        backend.pin_bytes(METADATA, name="7.json")
    assert "wrong-secret-jwt" not in str(caught.value)
    assert "wrong-secret-jwt" not in repr(backend)
    assert backend.health().ok is False
    assert pinata_standin.backend().health().ok is True


def test_pinata_429_then_success_honours_retry_after(pinata_standin):
    pinata_standin.fail_next(429, retry_after="0")
    pinata_standin.fail_next(503)
    result = pinata_standin.backend().pin_bytes(METADATA, name="7.json")
    assert result.cid == cid_for_bytes(METADATA)
    assert len(pinata_standin.requests) == 1  # only the successful attempt reached the upload handler


def test_pinata_persistent_5xx_gives_up_with_a_clear_error(pinata_standin):
    pinata_standin.fail_next(500, times=10)
    with pytest.raises(PinningUnavailableError, match=r"HTTP 500.*after 4 attempts"):
        pinata_standin.backend().pin_bytes(METADATA, name="7.json")


def test_pinata_quota_and_forbidden_are_told_apart(pinata_standin):
    pinata_standin.fail_next(403, reason="Account storage limit reached, upgrade your plan")
    with pytest.raises(PinningQuotaError, match="limit"):
        pinata_standin.backend().pin_bytes(METADATA, name="7.json")
    pinata_standin.fail_next(403)
    with pytest.raises(PinningAuthError, match="permission"):
        pinata_standin.backend().pin_bytes(METADATA, name="7.json")


def test_pinata_slow_service_times_out(pinata_standin):
    pinata_standin.slow_s = 3.0
    backend = pinata_standin.backend(
        timeouts=httpx.Timeout(connect=1.0, read=0.5, write=1.0, pool=1.0),
        retries=RetryPolicy(retries=1, backoff_s=0.01),
    )
    with pytest.raises(PinningUnavailableError, match="timed out"):
        backend.pin_bytes(METADATA, name="7.json")


def test_pinata_wrong_cid_is_refused_and_the_upload_deleted_again(pinata_standin):
    pinata_standin.cid_override = cid_for_bytes(b"something else")
    with pytest.raises(CIDMismatchError, match=r"computed .* deleted from Pinata again"):
        pinata_standin.backend().pin_bytes(METADATA, name="7.json", expected_cid=cid_for_bytes(METADATA))

    assert pinata_standin.files == {}  # nothing the studio refused stays in the user's account
    _upload, delete = pinata_standin.requests
    assert (delete["endpoint"], delete["network"]) == ("DELETE /v3/files", "public")


def test_pinata_wrong_cid_for_content_the_account_already_held_deletes_nothing(pinata_standin):
    pinata_standin.cid_override = cid_for_bytes(b"something else")
    earlier = pinata_standin.backend().pin_bytes(METADATA, name="earlier.json")  # the user's own upload

    with pytest.raises(CIDMismatchError, match="already held that content"):
        pinata_standin.backend().pin_bytes(METADATA, name="7.json", expected_cid=cid_for_bytes(METADATA))

    assert list(pinata_standin.files.values()) == [earlier.cid]
    assert all(not r["endpoint"].startswith("DELETE") for r in pinata_standin.requests)


def test_pinata_wrong_cid_whose_deletion_is_refused_says_what_to_do(pinata_standin):
    pinata_standin.cid_override = cid_for_bytes(b"something else")
    pinata_standin.refuse_deletes = True
    with pytest.raises(CIDMismatchError, match=r"Removing the upload .* failed .* Pinata dashboard") as refused:
        pinata_standin.backend().pin_bytes(METADATA, name="7.json", expected_cid=cid_for_bytes(METADATA))

    assert len(pinata_standin.files) == 1
    assert pinata_standin.jwt not in str(refused.value)


def test_pinata_wrong_cid_for_a_folder_is_unpinned_again(pinata_standin, vector_data):
    pinata_standin.cid_override = cid_for_bytes(b"something else")
    folder = vector_data / "wrapped"
    with pytest.raises(CIDMismatchError, match="deleted from Pinata again"):
        pinata_standin.backend().pin_directory(folder, expected_cid=cid_for_directory(folder))

    assert pinata_standin.pins == set()
    assert pinata_standin.requests[-1] == {"endpoint": "DELETE /pinning/unpin", "cid": cid_for_bytes(b"something else")}


def test_kubo_adds_with_v1_raw_leaves_then_pins(kubo_standin, vector_data, vectors):
    backend = kubo_standin.backend()
    result = backend.pin_file(vector_data / "c_5MiB.bin", expected_cid=vectors["files"]["c_5MiB.bin"]["v1"])
    assert result.cid == vectors["files"]["c_5MiB.bin"]["v1"]
    assert kubo_standin.pins == [result.cid]
    params = kubo_standin.requests[0]["params"]
    assert (params["cid-version"], params["raw-leaves"], params["pin"]) == ("1", "true", "false")
    folder = backend.pin_directory(vector_data / "wrapped")
    assert folder.cid == cid_for_directory(vector_data / "wrapped")
    assert backend.health().ok is True


def test_kubo_mismatch_is_refused_before_pinning(kubo_standin):
    kubo_standin.cid_override = cid_for_bytes(b"other")
    with pytest.raises(CIDMismatchError):
        kubo_standin.backend().pin_bytes(METADATA, name="7.json", expected_cid=cid_for_bytes(METADATA))
    assert kubo_standin.pins == []


def test_kubo_errors_and_outage(kubo_standin):
    kubo_standin.fail_next(500, times=1, message="blockstore: disk full")
    assert kubo_standin.backend().pin_bytes(METADATA, name="7.json").cid == cid_for_bytes(METADATA)
    kubo_standin.fail_next(500, times=5, message="blockstore: disk full")
    with pytest.raises(PinningUnavailableError, match="disk full"):
        kubo_standin.backend().pin_bytes(METADATA, name="7.json")
    stopped = kubo_standin.backend()
    stopped.api_url = "http://127.0.0.1:9"  # nothing listens on the discard port
    with pytest.raises(PinningUnavailableError, match="could not be reached"):
        stopped.pin_bytes(METADATA, name="7.json")


def test_pinner_pins_everywhere_and_checks_every_cid(local_store, pinata_standin, kubo_standin):
    pinner = Pinner([LocalPinning(local_store), pinata_standin.backend(), kubo_standin.backend()])
    pinned = pinner.pin_bytes(METADATA, name="7.json")
    assert pinned.cid == cid_for_bytes(METADATA)
    assert [r.backend for r in pinned.results] == ["local", "pinata", "kubo"]
    assert local_store.cat(pinned.cid) == METADATA

    pinata_standin.cid_override = cid_for_bytes(b"tampered")
    with pytest.raises(CIDMismatchError, match="already pinned on: local"):
        pinner.pin_bytes(b"new content", name="8.json")
    assert kubo_standin.pins == [pinned.cid]  # the later backend never saw the refused content


def test_create_pinner_from_settings(local_store, pinata_standin, tmp_path):
    settings = IpfsSettings(
        backends=["local", "pinata"],
        pinata_jwt=SecretStr(pinata_standin.jwt),
        pinata_api_url=pinata_standin.url,
        pinata_files_api_url=pinata_standin.url,
        max_file_mb=0.001,
    )
    pinner = create_pinner(pinner_options(settings), local_store)
    assert [b.name for b in pinner.backends] == ["local", "pinata"]
    assert all(h.ok for h in pinner.health())
    with pytest.raises(ContentTooLargeError):
        pinner.pin_bytes(b"x" * 2000, name="big.bin")
    with pytest.raises(PinningAuthError, match="STUDIO_IPFS__PINATA_JWT"):
        create_pinner(pinner_options(IpfsSettings(backends=["pinata"])), None)
