"""Command line: `python -m metadata cid PATH [--v0]`, `python -m metadata gateway` and `python -m metadata verify`.

`cid` prints what `ipfs add --only-hash --cid-version=1` (or, with --v0, plain `ipfs add`) would
print for a file or a folder, so content can be checked before and after pinning. `gateway` serves
the studio's local IPFS store at http://HOST:PORT/ipfs/<cid> without the rest of the studio. `verify`
checks a token's whole life from the chain and an IPFS gateway alone (metadata/verify.py); it exits 0
when every check holds and 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from metadata.errors import ContentError

if TYPE_CHECKING:
    from metadata.verify import ContentSource, Replay, TokenReport


def _cid(args: argparse.Namespace) -> int:
    from metadata.cid import cid_for_path

    print(cid_for_path(Path(args.path), version=0 if args.v0 else 1))
    return 0


def _gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from metadata.gateway import create_standalone_app
    from metadata.store import LocalStore, StoreOptions
    from studio.config import load_settings

    overrides = {"data_dir": Path(args.data_dir)} if args.data_dir else {}
    settings = load_settings(**overrides)
    settings.ensure_dirs()
    store = LocalStore.from_options(StoreOptions(root=settings.ipfs_dir, max_file_bytes=settings.ipfs.max_file_bytes))
    print(f"Serving {store.root} at http://{args.host}:{args.port}/ipfs/<cid>", file=sys.stderr)
    uvicorn.run(create_standalone_app(store), host=args.host, port=args.port, log_level="warning")
    return 0


def _replay(args: argparse.Namespace, report: TokenReport, source: ContentSource) -> Replay:
    # The one place the content layer's command reaches the generation engine, and only when asked.
    from metadata.replay import replay_token_version
    from studio.config import ModelSettings

    if not args.model:
        raise ContentError("--replay needs --model: the local folder, file or hub id of the model the token names")
    model = ModelSettings(
        model_id=args.model,
        device=args.device,
        dtype=args.dtype,
        tiny_autoencoder_id=args.tiny_autoencoder or None,
    )
    return replay_token_version(report, source, args.replay, model)


def _verify(args: argparse.Namespace) -> int:
    import json

    from metadata.verify import GatewaySource, parse_trust_anchor, verify_token

    anchor = None
    if args.trust_anchor:
        path = Path(args.trust_anchor)
        try:
            anchor = parse_trust_anchor(path.read_bytes()[: 64 * 1024 + 1], f"--trust-anchor {path}")
        except OSError as exc:
            raise ContentError(f"cannot read --trust-anchor {path}: {exc.strerror}") from None
    source = GatewaySource(args.gateway, timeout_s=args.timeout)
    try:
        report = verify_token(
            args.rpc,
            args.contract,
            args.token,
            source,
            trust_anchor_pem=anchor,
            from_block=args.from_block,
            rpc_timeout_s=args.timeout,
        )
        if args.replay is not None:
            report.replay = _replay(args, report, source)
    finally:
        source.close()
    print(json.dumps(report.to_json(), indent=2) if args.json else report.to_text())
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metadata", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cid = commands.add_parser("cid", help="print the CID of a file or folder, as `ipfs add --only-hash` does")
    cid.add_argument("path", help="file or folder")
    cid.add_argument("--v0", action="store_true", help="CIDv0 (Qm...) as plain `ipfs add` gives, instead of CIDv1")
    cid.set_defaults(run=_cid)
    gateway = commands.add_parser("gateway", help="serve the local IPFS store at /ipfs/<cid>")
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--port", type=int, default=8080)
    gateway.add_argument("--data-dir", help="the studio's data directory (default: settings.data_dir)")
    gateway.set_defaults(run=_gateway)
    verify = commands.add_parser(
        "verify", help="check a token's whole life (history, metadata, images, Content Credentials) from chain and IPFS"
    )
    verify.add_argument("--rpc", required=True, help="JSON-RPC URL of the token's network")
    verify.add_argument("--contract", required=True, help="the LivingNFT contract's address")
    verify.add_argument("--token", required=True, type=int, help="the token id")
    verify.add_argument("--gateway", default="https://ipfs.io", help="IPFS path gateway (default https://ipfs.io)")
    verify.add_argument(
        "--trust-anchor", help="PEM CA certificate to check Content Credentials against (default: the collection's)"
    )
    verify.add_argument("--from-block", type=int, default=0, help="first block to read events from (default 0)")
    verify.add_argument("--timeout", type=float, default=30.0, help="seconds per RPC call or gateway read")
    verify.add_argument("--json", action="store_true", help="print the report as JSON (schema living-nft-verify/1)")
    verify.add_argument("--replay", type=int, metavar="VERSION", help="regenerate this version and compare it")
    verify.add_argument("--model", help="with --replay: the model the token names (hub id, folder or file)")
    verify.add_argument("--tiny-autoencoder", help="with --replay: the tiny autoencoder the record names as decoder")
    verify.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda", "mps"],
        help="with --replay (auto: the recorded one)",
    )
    verify.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "float16", "bfloat16"],
        help="with --replay (auto: the recorded one)",
    )
    verify.set_defaults(run=_verify)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except ContentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
