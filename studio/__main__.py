"""`python -m studio collection generate|mint|show`: generative collections from a shell;
`python -m studio model download`: fetch the configured model before the first generation.

    collection generate SPEC.toml     generate the spec's editions as drafts (again: resumes where it stopped)
    collection mint NAME              mint the kept editions [--to ADDRESS] [--living RULES]
    collection show NAME              editions, their traits and drafts, and the rarity table
    model download                    download the hub model (and tiny autoencoder) into the HF cache

Progress goes to stdout, one line per edition. Ctrl-C stops after the current image; everything made is
kept and the same command resumes. Exit codes, as `python -m evolve`: 0 done, 1 a run failed or was
stopped, 2 bad input or configuration (spec, settings, address).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from studio.collections.spec import CollectionSpecError, load_spec_file


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m studio", description="Living NFT Studio from a shell.")
    commands = parser.add_subparsers(dest="command", required=True)
    collection = commands.add_parser("collection", help="generative collections")
    actions = collection.add_subparsers(dest="action", required=True)
    generate = actions.add_parser("generate", help="generate a spec's editions as drafts (resumes a stopped run)")
    generate.add_argument("spec", type=Path, help="the collection spec (.toml; README: Collections)")
    mint = actions.add_parser("mint", help="mint a generated collection's kept editions")
    mint.add_argument("name", help="the collection's name (name = ... in its spec)")
    mint.add_argument("--to", dest="recipient", help="who receives the tokens (default: the studio's account)")
    mint.add_argument("--living", metavar="RULES", help="mint living tokens following this rules file")
    show = actions.add_parser("show", help="editions and the rarity table")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="print JSON")
    model = commands.add_parser("model", help="the Stable Diffusion model")
    model_actions = model.add_subparsers(dest="action", required=True)
    model_actions.add_parser("download", help="download the configured hub model now, with its progress")
    return parser


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA --"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}:{minutes:02d}:{secs:02d}" if hours else f"ETA {minutes}:{secs:02d}"


def _print_progress(progress: Any) -> None:
    if progress.edition is None:
        print(f"{progress.done}/{progress.total} {progress.message}", flush=True)
    else:
        print(f"{progress.done}/{progress.total} {progress.message} {_eta(progress.eta_s)}", flush=True)


def _stop_on_interrupt() -> threading.Event:
    """Ctrl-C or SIGTERM stops the run after (or, through the engine, during) the current image."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        print("stopping after the current edition (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stop


def _generate(args: argparse.Namespace, settings: Any) -> int:
    from studio.services import collections
    from studio.services.studio import Studio

    try:
        _spec, text = load_spec_file(args.spec)
    except CollectionSpecError as exc:
        print(f"spec refused: {exc}", file=sys.stderr)
        return 2
    stop = _stop_on_interrupt()
    with Studio.open(settings) as studio:
        result = collections.generate_collection(
            studio, text, source=str(args.spec), on_progress=_print_progress, cancel=stop
        )
    if result.stopped:
        print(
            f"{result.name}: stopped with {result.generated}/{result.total} editions made; run the same command "
            "to resume",
            file=sys.stderr,
        )
        return 1
    print(f"{result.name}: {result.generated}/{result.total} editions made ({len(result.made)} in this run)")
    print(f"next: review them in the Generative tab, then: python -m studio collection mint {result.name}")
    return 0


def _mint(args: argparse.Namespace, settings: Any) -> int:
    from studio.services import collections
    from studio.services.startup import start_studio
    from studio.services.studio import Studio

    stop = _stop_on_interrupt()
    with Studio.open(settings) as studio:
        start_studio(studio)  # the chain, the mints an earlier stop left unrecorded, the signing CA
        result = collections.mint_collection(
            studio,
            args.name,
            recipient=args.recipient,
            living=args.living is not None,
            rules_name=args.living,
            on_progress=_print_progress,
            cancel=stop,
        )
        view = collections.get_collection(studio, args.name)
    left = [e.number for e in view.included if e.token_id is None]
    print(f"collection metadata: ipfs://{result.metadata_cid}")
    for number, token_id in sorted(result.minted.items()):
        print(f"edition {number}: token {token_id}")
    if left:
        print(
            f"{args.name}: stopped with {len(left)} editions left to mint; run the same command to go on",
            file=sys.stderr,
        )
        return 1
    print(f"{args.name}: {view.minted} tokens minted ({len(result.minted)} in this run), gas used {result.gas_used}")
    return 0


def _download_model(_args: argparse.Namespace, settings: Any) -> int:
    """One progress line a second: bytes of the total, rate and time left (stdout), then where it is."""
    import time

    from studio.generation.errors import GenerationError
    from studio.generation.loading import download_model

    last = [0.0]

    def show(progress: Any) -> None:
        if progress.finished or time.monotonic() - last[0] >= 1.0:
            last[0] = time.monotonic()
            print(f"{progress.repo_id}: {progress.sentence()}", flush=True)

    try:
        folders = download_model(settings.model, on_download=show)
    except GenerationError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if not folders:
        print(f"{settings.model.model_id} is a local model: nothing to download.")
    for folder in folders:
        print(f"ready: {folder}")
    return 0


def _show(args: argparse.Namespace, settings: Any) -> int:
    from studio.services import collections
    from studio.services.studio import Studio

    with Studio.open(settings) as studio:
        view = collections.get_collection(studio, args.name)
        rows = collections.rarity(studio, args.name)
    editions: list[dict[str, Any]] = [
        {
            "number": e.number,
            "traits": e.traits,
            "seed": e.seed,
            "draft_id": e.draft_id,
            "image_cid": e.image_cid,
            "excluded": e.excluded,
            "token_id": e.token_id,
        }
        for e in view.editions
    ]
    rarity = [
        {"trait": r.trait_type, "value": r.value, "count": r.count, "share": r.share, "weight_share": r.expected_share}
        for r in rows
    ]
    if args.json:
        print(json.dumps({"name": view.name, "editions": editions, "rarity": rarity}, indent=2))
        return 0
    print(
        f"{view.name}: {view.generated}/{len(view.editions)} generated, {len(view.included)} kept, {view.minted} minted"
    )
    for e in editions:
        state = (
            "excluded"
            if e["excluded"]
            else f"token {e['token_id']}"
            if e["token_id"]
            else (f"draft {e['draft_id']}" if e["draft_id"] else "not generated")
        )
        traits = ", ".join(f"{k}={v}" for k, v in e["traits"].items())
        print(f"  #{e['number']:<5} seed {e['seed']:<10} {state:<14} {traits}")
    print("rarity (kept editions):")
    for r in rarity:
        print(
            f"  {r['trait']:<16} {r['value']:<24} {r['count']:>6} {r['share']:>7.1%}  (weight {r['weight_share']:.1%})"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from contracts.urls import redact_urls
    from studio.config import check_content_reachable, load_settings
    from studio.generation.pool import ClusterUnavailableError
    from studio.rules import RulesError
    from studio.services.errors import StudioError

    try:
        settings = load_settings()
        if args.command == "collection" and args.action == "mint":
            check_content_reachable(settings)
    except ValueError as exc:
        print(f"settings refused: {exc}", file=sys.stderr)
        return 2
    actions = {"generate": _generate, "mint": _mint, "show": _show, "download": _download_model}
    try:
        return actions[args.action](args, settings)
    except CollectionSpecError as exc:
        print(f"spec refused: {exc}", file=sys.stderr)
        return 2
    except (StudioError, ValueError) as exc:
        # Input the services refused (an address, a name, a rules file): the message says what to fix.
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped; what was made is kept: run the same command to resume", file=sys.stderr)
        return 1
    except ClusterUnavailableError as exc:
        print(f"settings refused: {exc}", file=sys.stderr)
        return 2
    except RulesError as exc:
        print(f"rules file refused: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # A generation, pinning or chain failure: one line, no traceback (RPC URLs by origin only, as they
        # may hold a key); what was made is kept, so running the command again resumes.
        print(f"failed: {type(exc).__name__}: {redact_urls(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
