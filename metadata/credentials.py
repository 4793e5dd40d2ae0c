"""Content Credentials (C2PA) on every PNG the studio publishes, and the one reader that checks them.

Signing (`sign_png`): each published version carries a C2PA manifest signed with ES256. The first
version's action is `c2pa.created`; an evolution's is `c2pa.edited` (builder intent EDIT) with the
previous version's PNG as its `parentOf` ingredient, so a version's manifest store holds the whole
chain of manifests back to the mint. Every action says `digitalSourceType` trainedAlgorithmicMedia (the
machine-readable AI marking of EU AI Act Art. 50(2)) and names the model and the studio as its
`softwareAgent`. Our own assertion, `studio.livingnft.provenance`, holds the generation record, the
feed snapshot CID, the chain id, the contract and the token id.

The manifest is signed over the finished PNG (its `parameters`, `provenance` and `latents` chunks
written first), and the CID is computed over the signed file: the credentials cover those chunks, and
the CID covers the credentials.

Who signs: by default the studio's own certificate authority and an end-entity certificate it issued
(C2PA refuses self-signed leaf certificates), created on first use in `<data_dir>/credentials/` with
the keys readable by the owner only. An operator may instead give a certificate chain (leaf first) and
its key, e.g. one issued under the C2PA trust list. The CA certificate (the chain's last certificate)
is what the studio publishes as the collection's trust anchor. Keys are secrets: they are never logged,
shown or pinned (`SigningIdentity` leaves them out of its repr).

Reading (`read_credentials`): the C2PA library's own validation, with the given trust anchor, no
network (no remote manifests, no OCSP), its JSON report parsed with size and depth bounds. The verdict's
`state` is `trusted` (valid and signed under the anchor), `valid` (intact, but the signer does not
chain to the anchor, or no anchor was given), `invalid` (tampered or malformed) or `missing`.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from metadata.errors import BoundedJSONError, CredentialsError
from metadata.jsonsafe import load_json_bounded

PROVENANCE_LABEL = "studio.livingnft.provenance"
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
STUDIO_NAME = "Living NFT Studio"
CA_FILE, CA_KEY_FILE = "ca.pem", "ca.key"
SIGNER_CHAIN_FILE, SIGNER_KEY_FILE = "signer.pem", "signer.key"
# Certificates and keys are small; a file larger than this is not one.
MAX_PEM_BYTES = 64 * 1024
# A manifest store report: one manifest per version of the token, each a few KB of JSON.
MAX_REPORT_BYTES = 64 * 1024 * 1024
MAX_REPORT_DEPTH = 64
CA_VALIDITY = dt.timedelta(days=20 * 365)
SIGNER_VALIDITY = dt.timedelta(days=2 * 365)
RENEW_BEFORE = dt.timedelta(days=30)

CredentialsState = Literal["trusted", "valid", "invalid", "missing"]


@dataclass(frozen=True)
class CredentialsOptions:
    """How the studio signs, built from Settings by the services layer.

    `folder` holds the studio's own CA and signing certificate; `cert_chain` + `private_key` (PEM files,
    the chain leaf first) replace them when the operator gives their own."""

    folder: Path
    enabled: bool = True
    cert_chain: Path | None = None
    private_key: Path | None = None
    key_password: bytes | None = field(default=None, repr=False)
    signer_name: str = STUDIO_NAME


@dataclass(frozen=True)
class SigningIdentity:
    """A certificate chain (leaf first, then its CA) and the leaf's key; `trust_anchor_pem` is the
    chain's last certificate, the one the studio publishes so anyone can check its signatures."""

    cert_chain_pem: bytes
    private_key_pem: bytes = field(repr=False)
    trust_anchor_pem: bytes
    signer: str


@dataclass(frozen=True)
class ManifestFields:
    """What one version's manifest says about it (our assertion, the action's software agent)."""

    title: str
    generation: Mapping[str, Any]
    version: int
    previous_metadata_cid: str | None = None
    feed_snapshot_cid: str | None = None
    chain_id: int | None = None
    contract: str | None = None
    token_id: int | None = None
    studio_version: str | None = None

    @property
    def model_id(self) -> str:
        return str(self.generation.get("model_id") or "unknown model")

    def assertion(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "previous": f"ipfs://{self.previous_metadata_cid}" if self.previous_metadata_cid else None,
            "generation": dict(self.generation),
            "feed_snapshot": f"ipfs://{self.feed_snapshot_cid}" if self.feed_snapshot_cid else None,
            "chain_id": self.chain_id,
            "contract": self.contract,
            "token_id": self.token_id,
        }


@dataclass(frozen=True)
class CredentialsVerdict:
    """What a PNG's Content Credentials prove. `manifest` is the active manifest's label, `parent_manifest`
    the label of the manifest its `parentOf` ingredient carried (the previous version's), `provenance`
    our assertion as signed, `problems` the validation failures the C2PA library named."""

    state: CredentialsState
    signer: str | None = None
    issuer: str | None = None
    manifest: str | None = None
    parent_manifest: str | None = None
    action: str | None = None
    digital_source_type: str | None = None
    provenance: dict[str, Any] | None = None
    manifests: int = 0
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "signer": self.signer,
            "issuer": self.issuer,
            "manifest": self.manifest,
            "parent_manifest": self.parent_manifest,
            "action": self.action,
            "manifests": self.manifests,
            "problems": list(self.problems),
        }


# --- the signing identity ---------------------------------------------------------------------------


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    pkcs8 = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())


def _make_ca(organization: str, now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(f"{organization} Content Credentials CA", organization)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_signer(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, organization: str, now: dt.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """An end-entity ES256 certificate as C2PA wants one: digitalSignature, EKU emailProtection, SKI/AKI."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{organization} signer", organization))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(min(now + SIGNER_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _write_secret(path: Path, data: bytes) -> None:
    """A key file readable by its owner only from the moment it exists (never a window at 0644)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _read_bounded(path: Path, what: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_PEM_BYTES:
            raise CredentialsError(f"{what} {path} is {size:,} bytes: not a PEM certificate or key; check the path.")
        return path.read_bytes()
    except OSError as exc:
        raise CredentialsError(
            f"cannot read {what} {path} ({exc.strerror}): check the path and its permissions."
        ) from None


def _check_private(path: Path) -> None:
    """A signing key others can read is a leaked key: refuse it, as ssh does."""
    if os.name != "posix":
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise CredentialsError(
            f"the signing key {path} can be read by other users (mode {mode:o}): run `chmod 600 {path}` and "
            "consider it compromised if others had access."
        )


def _load_key(data: bytes, path: Path, password: bytes | None) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError) as exc:
        hint = "wrong STUDIO_CREDENTIALS__KEY_PASSWORD?" if password or b"ENCRYPTED" in data else "expected a PEM key"
        raise CredentialsError(f"cannot load the signing key {path}: {hint} ({type(exc).__name__})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CredentialsError(
            f"the signing key {path} is not an EC P-256 key: Content Credentials are signed with ES256; "
            "issue the signing certificate for a P-256 key."
        )
    return key


def _describe(cert: x509.Certificate) -> str:
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return str(names[0]) if names else cert.subject.rfc4514_string()


def _own_identity(options: CredentialsOptions) -> SigningIdentity:
    folder = options.folder
    if not (folder / SIGNER_KEY_FILE).exists():
        _create_own(options)
    for name in (CA_KEY_FILE, SIGNER_KEY_FILE):
        _check_private(folder / name)
    ca_cert = x509.load_pem_x509_certificate(_read_bounded(folder / CA_FILE, "the CA certificate"))
    chain = _read_bounded(folder / SIGNER_CHAIN_FILE, "the signing certificate")
    leaf = x509.load_pem_x509_certificates(chain)[0]
    now = dt.datetime.now(dt.UTC)
    if leaf.not_valid_after_utc - now < RENEW_BEFORE:
        # The CA outlives its signing certificates: a new one keeps the published trust anchor valid.
        ca_key = _load_key(_read_bounded(folder / CA_KEY_FILE, "the CA key"), folder / CA_KEY_FILE, None)
        key, cert = _make_signer(ca_key, ca_cert, options.signer_name, now)
        renewed = folder / f".{SIGNER_KEY_FILE}.{secrets.token_hex(4)}.tmp"
        _write_secret(renewed, _key_pem(key))
        _write_public(folder / SIGNER_CHAIN_FILE, _pem(cert) + _pem(ca_cert))
        os.replace(renewed, folder / SIGNER_KEY_FILE)
        chain = _pem(cert) + _pem(ca_cert)
    key_pem = _read_bounded(folder / SIGNER_KEY_FILE, "the signing key")
    return SigningIdentity(
        cert_chain_pem=chain, private_key_pem=key_pem, trust_anchor_pem=_pem(ca_cert), signer=_describe(leaf)
    )


def _create_own(options: CredentialsOptions) -> None:
    """The studio's CA and signing certificate, written to a temporary folder then renamed into place:
    two processes starting at once end with one identity, never a mix of two."""
    folder = options.folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.{secrets.token_hex(4)}.tmp")
    staging.mkdir(mode=0o700)
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = _make_ca(options.signer_name, now)
    key, cert = _make_signer(ca_key, ca_cert, options.signer_name, now)
    _write_secret(staging / CA_KEY_FILE, _key_pem(ca_key))
    _write_secret(staging / SIGNER_KEY_FILE, _key_pem(key))
    (staging / CA_FILE).write_bytes(_pem(ca_cert))
    (staging / SIGNER_CHAIN_FILE).write_bytes(_pem(cert) + _pem(ca_cert))
    try:
        os.rename(staging, folder)
    except OSError:
        # Another process made it first (or an empty folder was there): keep theirs, drop ours.
        for child in staging.iterdir():
            child.unlink()
        staging.rmdir()
        if not (folder / SIGNER_KEY_FILE).exists():
            raise CredentialsError(
                f"{folder} exists but holds no signing key: move it away so the studio can create its "
                "Content Credentials certificates there, or set STUDIO_CREDENTIALS__CERT_CHAIN and __KEY."
            ) from None


def _operator_identity(options: CredentialsOptions) -> SigningIdentity:
    assert options.cert_chain is not None
    assert options.private_key is not None
    chain_pem = _read_bounded(options.cert_chain, "the certificate chain")
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise CredentialsError(f"{options.cert_chain} holds no PEM certificates: give the chain as PEM.") from None
    if len(certs) < 2:
        raise CredentialsError(
            f"{options.cert_chain} holds one certificate: C2PA refuses self-signed or lone leaf certificates; "
            "give the signing certificate followed by the CA certificate(s) that issued it."
        )
    _check_private(options.private_key)
    key = _load_key(_read_bounded(options.private_key, "the signing key"), options.private_key, options.key_password)
    if key.public_key() != certs[0].public_key():
        raise CredentialsError(
            f"the key {options.private_key} does not belong to the first certificate of {options.cert_chain}: "
            "the chain must start with the signing (leaf) certificate of that key."
        )
    return SigningIdentity(
        cert_chain_pem=b"".join(_pem(c) for c in certs),
        private_key_pem=_key_pem(key),
        trust_anchor_pem=_pem(certs[-1]),
        signer=_describe(certs[0]),
    )


def load_signing_identity(options: CredentialsOptions) -> SigningIdentity:
    """The operator's chain and key when both are configured, else the studio's own (created on first use)."""
    if (options.cert_chain is None) != (options.private_key is None):
        raise CredentialsError(
            "only one of STUDIO_CREDENTIALS__CERT_CHAIN and STUDIO_CREDENTIALS__KEY is set: give both (your "
            "certificate chain and its key), or neither to let the studio use its own CA."
        )
    if options.cert_chain is not None:
        return _operator_identity(options)
    return _own_identity(options)


# --- signing -----------------------------------------------------------------------------------------


def _c2pa() -> Any:
    import c2pa  # a native library: loaded only where credentials are made or read

    return c2pa


def _context(c2pa: Any, trust_anchor_pem: bytes | None = None) -> Any:
    """No network ever: no remote manifest, no OCSP; no thumbnails (they add size, not proof)."""
    config: dict[str, Any] = {
        "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
        "builder": {"thumbnail": {"enabled": False}},
    }
    if trust_anchor_pem is not None:
        config["trust"] = {"trust_anchors": trust_anchor_pem.decode("ascii", "replace")}
        config["verify"].update({"verify_trust": True, "verify_cert_anchors": True})
    return c2pa.Context(c2pa.Settings.from_dict(config))


def sign_png(
    png: bytes, fields: ManifestFields, identity: SigningIdentity, *, parent_png: bytes | None = None
) -> bytes:
    """`png` with a signed C2PA manifest: `c2pa.created`, or `c2pa.edited` over `parent_png` (the
    previous version, which becomes the `parentOf` ingredient and brings its manifests along)."""
    c2pa = _c2pa()
    agent = {"name": f"{fields.model_id} via {STUDIO_NAME}"}
    if fields.studio_version:
        agent["version"] = fields.studio_version
    action = {
        "action": "c2pa.edited" if parent_png is not None else "c2pa.created",
        "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
        "softwareAgent": agent,
    }
    generator = {"name": STUDIO_NAME, **({"version": fields.studio_version} if fields.studio_version else {})}
    manifest = {
        "claim_generator_info": [generator],
        "title": fields.title,
        "format": "image/png",
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": [action]}},
            {"label": PROVENANCE_LABEL, "data": fields.assertion()},
        ],
    }
    out = io.BytesIO()
    info = c2pa.C2paSignerInfo(
        alg=b"es256", sign_cert=identity.cert_chain_pem, private_key=identity.private_key_pem, ta_url=None
    )
    try:
        # Closed at once: the native objects hold the key and the image, not left to the garbage collector.
        with c2pa.Signer.from_info(info) as signer, c2pa.Builder(manifest, context=_context(c2pa)) as builder:
            if parent_png is not None:
                builder.set_intent(c2pa.C2paBuilderIntent.EDIT)
                parent = {"title": f"version {fields.version - 1}", "relationship": "parentOf"}
                builder.add_ingredient(parent, "image/png", io.BytesIO(parent_png))
            builder.sign(signer, "image/png", io.BytesIO(png), out)
    except c2pa.C2paError as exc:
        # The library's message names certificates and formats, never the key's bytes.
        raise CredentialsError(f"the C2PA library refused to sign the image: {exc}") from None
    return out.getvalue()


# --- reading -----------------------------------------------------------------------------------------


def _problems(results: Any) -> tuple[str, ...]:
    if not isinstance(results, dict):
        return ()
    active = results.get("activeManifest") or {}
    failures = list(active.get("failure") or []) if isinstance(active, dict) else []
    for delta in results.get("ingredientDeltas") or []:
        if isinstance(delta, dict):
            failures.extend((delta.get("validationDeltas") or {}).get("failure") or [])
    return tuple(f"{f.get('code')}: {f.get('explanation')}" for f in failures if isinstance(f, dict))


def read_credentials(png: bytes, trust_anchor_pem: bytes | None = None) -> CredentialsVerdict:
    """Validate `png`'s Content Credentials (under `trust_anchor_pem` when given) and say what they hold.
    Never raises for a bad image: a PNG from anywhere gets a verdict."""
    c2pa = _c2pa()
    try:
        reader = c2pa.Reader("image/png", io.BytesIO(png), context=_context(c2pa, trust_anchor_pem))
    except c2pa.C2paError.ManifestNotFound:
        return CredentialsVerdict(state="missing")
    except c2pa.C2paError as exc:
        return CredentialsVerdict(state="invalid", problems=(f"unreadable manifest: {exc}",))
    try:
        state = str(reader.get_validation_state() or "").lower()
        report = load_json_bounded(
            reader.json(), max_bytes=MAX_REPORT_BYTES, max_depth=MAX_REPORT_DEPTH, what="the C2PA manifest store"
        )
    except (c2pa.C2paError, BoundedJSONError) as exc:
        return CredentialsVerdict(state="invalid", problems=(f"unreadable manifest: {exc}",))
    finally:
        reader.close()
    manifests = report.get("manifests") if isinstance(report, dict) else None
    label = report.get("active_manifest") if isinstance(report, dict) else None
    if not isinstance(manifests, dict) or not isinstance(label, str) or not isinstance(manifests.get(label), dict):
        return CredentialsVerdict(state="invalid", problems=("the manifest store has no active manifest",))
    active = manifests[label]
    signature = active.get("signature_info") or {}
    action, source, provenance = None, None, None
    for assertion in active.get("assertions") or []:
        if not isinstance(assertion, dict):
            continue
        data = assertion.get("data")
        if str(assertion.get("label", "")).startswith("c2pa.actions") and isinstance(data, dict):
            ours = [a for a in data.get("actions") or [] if isinstance(a, dict) and a.get("action") != "c2pa.opened"]
            if ours:
                action, source = ours[0].get("action"), ours[0].get("digitalSourceType")
        elif assertion.get("label") == PROVENANCE_LABEL and isinstance(data, dict):
            provenance = data
    parents = [
        i
        for i in active.get("ingredients") or []
        if isinstance(i, dict) and i.get("relationship") == "parentOf" and isinstance(i.get("active_manifest"), str)
    ]
    verdict_state: CredentialsState = "trusted" if state == "trusted" else "valid" if state == "valid" else "invalid"
    return CredentialsVerdict(
        state=verdict_state,
        signer=str(signature.get("common_name")) if signature.get("common_name") else None,
        issuer=str(signature.get("issuer")) if signature.get("issuer") else None,
        manifest=label,
        parent_manifest=parents[0]["active_manifest"] if parents else None,
        action=str(action) if action else None,
        digital_source_type=str(source) if source else None,
        provenance=provenance,
        manifests=len(manifests),
        problems=_problems(report.get("validation_results")),
    )
