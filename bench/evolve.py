"""Evolution cycle overhead and gas: 100 living tokens, the tiny model, the embedded anvil.

One cycle in which every token's state changes: snapshot, evaluation, img2img, pinning (local store),
one batched update on chain, journal and records. Image generation is timed inside the cycle and taken
out, so what is left is what the evolution machinery itself costs per token; with a real model the
generation (seconds per image) must dominate it.

Prints ONE JSON line:
  tokens                    living tokens in the collection (100)
  cycle_wall_s              the whole cycle, seconds
  generation_s              of which image generation (tiny model), seconds
  overhead_ms_per_token     (cycle_wall_s - generation_s) / tokens, in ms (target: < 50)
  overhead_ratio            overhead_ms_per_token / 50 (the target; below 1 meets it)
  gas_per_token             gas used by the cycle's transactions / evolved tokens, as deployed
  transactions              how many transactions the cycle sent
  quiet_cycle_ms_per_token  a second cycle with no change (nothing generated or sent), per token
Usage: .venv/bin/python bench/evolve.py   (about a minute: minting the 100 tokens is most of it)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOKENS = 100
TARGET_MS = 50.0


class Weather(BaseHTTPRequestHandler):
    temperature = -5.0

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"current": {"temperature": Weather.temperature}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    import torch

    from evolve.cycle import run_cycle
    from evolve.journal import CycleStatus
    from studio.config import ModelSettings, load_settings
    from studio.services.drafts import create_draft
    from studio.services.minting import mint_draft
    from studio.services.studio import Studio
    from tests.fixtures.evolve import weather_rules
    from tests.fixtures.generation import build_tiny_autoencoder, build_tiny_pipeline

    torch.set_num_threads(1)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Weather)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/weather"

    with tempfile.TemporaryDirectory(prefix="bench-evolve-") as tmp:
        root = Path(tmp)
        build_tiny_pipeline(root).save_pretrained(root / "tiny-sd-turbo", safe_serialization=True)
        build_tiny_autoencoder().save_pretrained(root / "taesd", safe_serialization=True)
        settings = load_settings(
            data_dir=root / "data",
            chain={"local_port": 0},
            model=ModelSettings(
                model_id=str(root / "tiny-sd-turbo"),
                device="cpu",
                dtype="float32",
                tiny_autoencoder_id=str(root / "taesd"),
                max_side=256,
            ),
        )
        with Studio.open(settings) as studio:
            studio.start_chain()
            settings.rules_dir.mkdir(parents=True, exist_ok=True)
            rules = weather_rules(url).replace('timestamp_path = "current.time"\nmax_age_s = 600\n', "")
            (settings.rules_dir / "bench.toml").write_text(rules)
            for index in range(TOKENS):
                draft = create_draft(studio, prompt=f"a lighthouse {index}", seed=index, width=64, height=64)
                mint_draft(
                    studio,
                    draft.draft.id,
                    name=f"Lighthouse {index}",
                    recipient=studio.chain.address,
                    living=True,
                    rules_name="bench",
                )
            report = run_cycle(studio, "bench")
            if report.status != CycleStatus.DONE or len(report.evolved) != TOKENS:
                raise SystemExit(f"the bench cycle did not evolve every token: {report.to_json()}")
            quiet = run_cycle(studio, "bench")
        server.shutdown()

    overhead_ms = (report.wall_s - report.generation_s) / TOKENS * 1000
    print(
        json.dumps(
            {
                "tokens": TOKENS,
                "cycle_wall_s": round(report.wall_s, 3),
                "generation_s": round(report.generation_s, 3),
                "overhead_ms_per_token": round(overhead_ms, 2),
                "overhead_target_ms": TARGET_MS,
                "overhead_ratio": round(overhead_ms / TARGET_MS, 3),
                "gas_per_token": report.gas_used // len(report.evolved),
                "transactions": len(report.transactions),
                "quiet_cycle_ms_per_token": round(quiet.wall_s / TOKENS * 1000, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
