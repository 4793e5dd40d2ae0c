"""Pinata, through its current API: JWT bearer auth, public network, CIDv1.

Single files go to the v3 Files API (`POST {upload_url}/v3/files`, `network=public`). Pinata
documents that the v3 upload does not take folders and points to `pinFileToIPFS` for them (its own
SDK's `fileArray` does the same), so folders go to `POST {api_url}/pinning/pinFileToIPFS` with one
`file` part per file named `<folder>/<relative path>` and `pinataOptions={"cidVersion":1}`.
Bodies are streamed; the JWT is sent only to Pinata and never appears in a message.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from metadata.errors import CIDMismatchError, ContentReadError, PinningAuthError, PinningError
from metadata.pinning.base import BackendHealth, PinningBackend, PinResult
from metadata.pinning.http import MultipartBody, Part, RetryPolicy, send

FIX_AUTH = "Create a JWT in the Pinata dashboard (API Keys, with files:write) and set it in STUDIO_IPFS__PINATA_JWT."


def _folder_files(root: Path) -> list[Path]:
    """Files under `root` as `ipfs add -r` takes them: dot entries skipped, symlinks refused."""
    found: list[Path] = []
    for child in sorted(root.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_symlink():
            raise ContentReadError(f"{child} is a symbolic link; copy the file it points to instead")
        if child.is_dir():
            found.extend(_folder_files(child))
        elif child.is_file():
            found.append(child)
    return found


class PinataPinning(PinningBackend):
    name = "pinata"

    def __init__(
        self,
        jwt: str,
        upload_url: str = "https://uploads.pinata.cloud",
        api_url: str = "https://api.pinata.cloud",
        timeouts: httpx.Timeout | None = None,
        retries: RetryPolicy | int = 4,
    ) -> None:
        if not jwt:
            raise PinningAuthError(f"No Pinata JWT configured. {FIX_AUTH}")
        self._jwt = jwt
        self.upload_url = upload_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        self.timeouts = timeouts or httpx.Timeout(connect=10.0, read=120.0, write=120.0, pool=10.0)
        self.policy = retries if isinstance(retries, RetryPolicy) else RetryPolicy(retries=retries)

    def __repr__(self) -> str:  # never show the JWT
        return f"PinataPinning(upload_url={self.upload_url!r}, api_url={self.api_url!r})"

    def _headers(self, body: MultipartBody | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._jwt}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = body.content_type
            headers["Content-Length"] = str(body.length)
        return headers

    def _post(self, url: str, body: MultipartBody) -> dict[str, Any]:
        with httpx.Client(timeout=self.timeouts) as client:
            response = send(
                "Pinata",
                lambda: client.post(url, content=iter(body), headers=self._headers(body)),
                self.policy,
                fix_auth=FIX_AUTH,
            )
        try:
            payload = response.json()
        except ValueError as exc:
            raise PinningError(
                f"Pinata answered {url} with something that is not JSON: {response.text[:200]!r}"
            ) from exc
        if not isinstance(payload, dict):
            raise PinningError(f"Pinata answered {url} with unexpected JSON: {payload!r}"[:300])
        return payload

    def _upload_file(self, content: bytes | Path, name: str, expected_cid: str | None) -> PinResult:
        body = MultipartBody(
            [
                Part("network", b"public"),
                Part("name", name.encode("utf-8")),
                Part("file", content, filename=name, content_type="application/octet-stream"),
            ]
        )
        payload = self._post(f"{self.upload_url}/v3/files", body)
        data = payload.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("cid"), str):
            raise PinningError(f"Pinata's upload answer has no data.cid: {json.dumps(payload)[:300]}")
        file_id = data.get("id")
        delete_path = f"/v3/files/public/{file_id}" if isinstance(file_id, str) and file_id else None
        self._check_or_remove(data["cid"], expected_cid, name, data.get("is_duplicate"), delete_path)
        return PinResult(data["cid"], self.name, int(data.get("size") or 0), str(data.get("name") or name))

    def pin_bytes(self, data: bytes, *, name: str, expected_cid: str | None = None) -> PinResult:
        return self._upload_file(bytes(data), name, expected_cid)

    def pin_file(self, path: str | os.PathLike[str], *, expected_cid: str | None = None) -> PinResult:
        target = Path(path)
        if not target.is_file():
            raise ContentReadError(f"{target} does not exist or is not a regular file: check the path")
        return self._upload_file(target, target.name, expected_cid)

    def pin_directory(self, path: str | os.PathLike[str], *, expected_cid: str | None = None) -> PinResult:
        root = Path(path)
        if not root.is_dir():
            raise ContentReadError(f"{root} does not exist or is not a folder: check the path")
        files = _folder_files(root)
        if not files:
            raise ContentReadError(f"{root} holds no files to pin")
        parts = [
            Part(
                "file",
                file,
                filename=f"{root.name}/{file.relative_to(root).as_posix()}",
                content_type="application/octet-stream",
            )
            for file in files
        ]
        parts.append(Part("pinataMetadata", json.dumps({"name": root.name}).encode("utf-8")))
        parts.append(Part("pinataOptions", json.dumps({"cidVersion": 1}).encode("utf-8")))
        payload = self._post(f"{self.api_url}/pinning/pinFileToIPFS", MultipartBody(parts))
        cid = payload.get("IpfsHash")
        if not isinstance(cid, str):
            raise PinningError(f"Pinata's pinFileToIPFS answer has no IpfsHash: {json.dumps(payload)[:300]}")
        self._check_or_remove(cid, expected_cid, str(root), payload.get("isDuplicate"), f"/pinning/unpin/{cid}")
        return PinResult(cid, self.name, int(payload.get("PinSize") or 0), root.name)

    def _check_or_remove(
        self, returned: str, expected: str | None, what: str, duplicate: object, delete_path: str | None
    ) -> None:
        """The CID check; a refused upload is deleted from Pinata again, unless Pinata says the same
        content was already there (then the upload is the user's earlier file, not the studio's to delete)."""
        try:
            self._check(returned, expected, what)
        except CIDMismatchError as exc:
            if duplicate is True:
                outcome = "Pinata already held that content before this upload, so it is left there."
            elif delete_path is None:
                outcome = "Pinata's answer named no file id to delete it by: delete it in the Pinata dashboard."
            else:
                outcome = self._delete(delete_path)
            raise CIDMismatchError(f"{exc} {outcome}") from None

    def _delete(self, path: str) -> str:
        """DELETE {api_url}{path}; returns a sentence saying how it went."""
        url = f"{self.api_url}{path}"
        try:
            with httpx.Client(timeout=self.timeouts) as client:
                send("Pinata", lambda: client.delete(url, headers=self._headers()), self.policy, fix_auth=FIX_AUTH)
        except PinningError as exc:
            return f"Removing the upload from Pinata failed ({exc}): delete it in the Pinata dashboard."
        return "The upload was deleted from Pinata again."

    def health(self) -> BackendHealth:
        try:
            with httpx.Client(timeout=self.timeouts) as client:
                send(
                    "Pinata",
                    lambda: client.get(f"{self.api_url}/data/testAuthentication", headers=self._headers()),
                    RetryPolicy(retries=0),
                    fix_auth=FIX_AUTH,
                )
        except PinningError as exc:
            return BackendHealth(self.name, False, str(exc))
        return BackendHealth(self.name, True, f"authenticated at {self.api_url}")
