"""Peer measurement: the same random-weight sd-turbo architecture run the way FastSD CPU runs it, through OpenVINO.

FastSD CPU, the tool CPU users pick today, runs sd-turbo as an OpenVINO IR exported by optimum-intel, with
TAESD (also as OpenVINO IR) as the decoder. This script does the same with the model folder that
bench/generate.py builds: the text encoder and UNet are exported by optimum-intel, TAESD's decoder is
converted with openvino.convert_model and takes the place of the full VAE decoder. Shapes stay dynamic
(a static reshape to batch 1 fails at guidance 0). 512x512, 1 step, guidance 0, seed 1, the prompt of
bench/generate.py.

It needs its own virtual environment (optimum-intel pins a huggingface-hub and transformers that our venv
cannot share): `make .venv-openvino/.installed`, then

  .venv-openvino/bin/python bench/openvino_peer.py MODEL_DIR TAESD_DIR CACHE_DIR [--rounds N] [--threads N]
      [--precision default|f32|bf16] [--save-png PATH] [--serve]

The IR is exported once into CACHE_DIR, in a folder keyed by both model folders (paths, file sizes and
times) and the openvino / optimum-intel versions, and reused afterwards (the export took 13 minutes and
10 GiB of memory on a busy 2-core Zen 4; about 5 GiB of IR). Folders of older keys are left for the caller
to delete. transformers 5.5 cannot read the text encoder saved by our newer transformers (its keys lack the
text_model. prefix): it reports them UNEXPECTED / MISSING and starts from new random weights, which costs
the same as the saved random ones.

Threads: OpenVINO's INFERENCE_NUM_THREADS is set to torch's thread count (what bench/generate.py's engine
uses). On CPUs with AVX512_BF16 (Zen 4) the CPU plugin runs every part in bf16 unless --precision f32.
To hold it to AVX2: ONEDNN_MAX_CPU_ISA=AVX2 with --precision f32 (with bf16 the UNet fails to compile);
that moves the convolutions, element-wise ops and attention subgraphs to AVX2 kernels, while OpenVINO's
own group-norm (MVN) and interpolate kernels stay on AVX-512 (on a Zen 4, the f32 UNet's CPU seconds per call
went from 8.0-8.1 to 8.4-8.7).

One-shot mode prints ONE JSON line:
  openvino_fast_s          median seconds of `rounds` pipeline calls after one warm-up call (text encoder,
                           UNet, TAESD decoder and diffusers' pre/post-processing; as fast_s in generate.py)
  openvino_stages          seconds per stage (text_encoder, unet, decoder) of the median call, and cpu_s: the
                           CPU seconds of all its threads in that call (well below threads x wall time on a
                           busy machine: the call waited for a core)
  openvino_cpu_s           median CPU seconds per call (all threads): steadier than wall time on a shared machine
  openvino_version, optimum_intel_version
  export_s                 seconds the export took in this run (0 when the cached IR was reused)
  load_s                   reading the IR and compiling it for the CPU
  threads                  OpenVINO's INFERENCE_NUM_THREADS, and torch's thread count (the same number)
  inference_precision      the precision OpenVINO's CPU plugin chose per part (bf16 on CPUs that have it)

--serve mode lets a caller interleave its rounds with this one: after loading and the warm-up it prints
{"ready": true, ...the load figures...}; then each line "run" on stdin makes one image and answers one
line {"openvino_fast_s": seconds, "openvino_stages": {...}}; "quit" (or end of input) ends it. Anything
else is answered with {"error": ...} and the process goes on.

Only the JSON lines go to stdout: everything else that writes to file descriptor 1 (the exporters' and
OpenVINO's own messages) is sent to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any, TextIO

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("OPENVINO_TELEMETRY_DISABLE", "1")  # nothing may leave this machine

PROMPT = "a lighthouse on a cliff at dawn, oil painting"  # the prompt of bench/generate.py
SIZE = 512
SEED = 1
ROUNDS = 9  # bench/generate.py's round count
EXPORT_VERSION = 1  # bump when the layout of the cached IR folder changes


class PeerError(Exception):
    """A problem with the peer's inputs that the caller can fix; the message names the fix."""


def folder_fingerprint(folder: Path) -> list[tuple[str, int, int]]:
    """Every file of a model folder with its size and modification time: a rebuilt model gets a new key."""
    return sorted(
        (str(path.relative_to(folder)), path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file()
    )


def cache_key(model_dir: Path, taesd_dir: Path) -> str:
    identity = {
        "model": [str(model_dir), folder_fingerprint(model_dir)],
        "taesd": [str(taesd_dir), folder_fingerprint(taesd_dir)],
        "openvino": version("openvino"),
        "optimum_intel": version("optimum-intel"),
        "layout": EXPORT_VERSION,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return f"{model_dir.name}-{digest}"


def convert_taesd_decoder(taesd_dir: Path, target: Path) -> None:
    """TAESD's decoder as an OpenVINO IR in optimum-intel's vae_decoder layout (FastSD CPU's "TAESD" mode).

    The input and output carry the names optimum-intel's OVModelVaeDecoder feeds and reads (latent_sample,
    sample), and TAESD's config (scaling_factor 1.0, four blocks) replaces the VAE's, so the pipeline neither
    rescales the latents for the full VAE nor gets the image size wrong."""
    import openvino
    import torch
    from diffusers import AutoencoderTiny

    taesd = AutoencoderTiny.from_pretrained(taesd_dir).eval()
    with torch.no_grad():
        # DecoderTiny maps the latents to an image in [-1, 1], the full VAE decoder's range.
        model = openvino.convert_model(taesd.decoder, example_input=torch.zeros(1, 4, SIZE // 8, SIZE // 8))
    model.inputs[0].get_tensor().set_names({"latent_sample"})
    model.outputs[0].get_tensor().set_names({"sample"})
    target.mkdir(parents=True, exist_ok=True)
    openvino.save_model(model, target / "openvino_model.xml", compress_to_fp16=False)
    shutil.copyfile(taesd_dir / "config.json", target / "config.json")


def export_pipeline(model_dir: Path, taesd_dir: Path, cache_dir: Path) -> tuple[Path, float]:
    """The IR folder for the model pair, exported now unless it is cached; and the seconds the export took."""
    folder = cache_dir / cache_key(model_dir, taesd_dir)
    if (folder / "model_index.json").is_file():
        return folder, 0.0
    from optimum.exporters.openvino import main_export

    start = time.perf_counter()
    partial = cache_dir / (folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # an export killed halfway leaves this; start it again
    partial.mkdir(parents=True)
    # What `optimum-cli export openvino --model MODEL_DIR --task text-to-image` does: fp32 weights (the
    # model is below optimum's size for weight compression), dynamic shapes.
    main_export(
        model_name_or_path=str(model_dir),
        output=partial,
        task="text-to-image",
        library_name="diffusers",
        local_files_only=True,
    )
    shutil.rmtree(partial / "vae_decoder")
    # The full VAE's encoder is never used for text-to-image; not loading it keeps load_s to the parts used.
    shutil.rmtree(partial / "vae_encoder", ignore_errors=True)
    convert_taesd_decoder(taesd_dir, partial / "vae_decoder")
    partial.rename(folder)  # only a complete export gets the name that is reused
    return folder, time.perf_counter() - start


def load_pipeline(folder: Path, threads: int, precision: str) -> Any:
    from optimum.intel import OVStableDiffusionPipeline

    ov_config: dict[str, str] = {"INFERENCE_NUM_THREADS": str(threads)}
    if precision != "default":
        ov_config["INFERENCE_PRECISION_HINT"] = precision
    # compile=True compiles every part now, so the first timed call does not pay for it.
    pipe = OVStableDiffusionPipeline.from_pretrained(
        str(folder), export=False, ov_config=ov_config, compile=True, local_files_only=True
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


class StageTimer:
    """Seconds spent in each OpenVINO part during one pipeline call, from a wrapper around its forward."""

    def __init__(self, parts: dict[str, Any]) -> None:
        self.seconds: dict[str, float] = {}
        for name, part in parts.items():
            part.forward = self._timed(name, part.forward)

    def _timed(self, name: str, forward: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return forward(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

        return timed


def make_runner(pipe: Any) -> tuple[Callable[[], tuple[float, dict[str, float], Any]], StageTimer]:
    import torch

    timer = StageTimer({"text_encoder": pipe.text_encoder, "unet": pipe.unet, "decoder": pipe.vae_decoder})

    def run() -> tuple[float, dict[str, float], Any]:
        timer.seconds = {}
        cpu_start = time.process_time()
        start = time.perf_counter()
        image = pipe(
            PROMPT,
            num_inference_steps=1,
            guidance_scale=0.0,
            width=SIZE,
            height=SIZE,
            generator=torch.Generator("cpu").manual_seed(SEED),
        ).images[0]
        seconds = time.perf_counter() - start
        stages = {name: round(value, 3) for name, value in timer.seconds.items()}
        # CPU seconds of all the process's threads: on a busy machine, far below threads x wall time.
        stages["cpu_s"] = round(time.process_time() - cpu_start, 3)
        return seconds, stages, image

    return run, timer


def compiled_precisions(pipe: Any) -> dict[str, str]:
    return {
        name: part.request.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        for name, part in (("text_encoder", pipe.text_encoder), ("unet", pipe.unet), ("decoder", pipe.vae_decoder))
    }


def emit(out: TextIO, figures: dict[str, Any]) -> None:
    out.write(json.dumps(figures) + "\n")
    out.flush()


def serve(out: TextIO, run: Callable[[], tuple[float, dict[str, float], Any]], ready: dict[str, Any]) -> None:
    emit(out, {"ready": True, **ready})
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            return
        if command == "run":
            seconds, stages, _ = run()
            emit(out, {"openvino_fast_s": round(seconds, 3), "openvino_stages": stages})
        elif command:
            emit(out, {"error": f"unknown command {command[:80]!r}: send 'run' or 'quit', one per line"})


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path, help="a diffusers sd-turbo folder (bench/generate.py's random one)")
    parser.add_argument("taesd_dir", type=Path, help="a diffusers AutoencoderTiny (TAESD) folder")
    parser.add_argument("cache_dir", type=Path, help="where the exported OpenVINO IR is kept and reused")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"timed calls after the warm-up ({ROUNDS})")
    parser.add_argument("--threads", type=int, default=0, help="threads (default: what torch uses, as in our bench)")
    parser.add_argument(
        "--precision",
        choices=("default", "f32", "bf16"),
        default="default",
        help="OpenVINO's INFERENCE_PRECISION_HINT (default: the CPU plugin's own choice, as FastSD CPU runs it)",
    )
    parser.add_argument("--save-png", type=Path, help="save the warm-up image there")
    parser.add_argument("--serve", action="store_true", help="answer 'run' / 'quit' lines on stdin (see above)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not (args.model_dir / "model_index.json").is_file():
        raise PeerError(f"{args.model_dir} has no model_index.json: pass the sd-turbo folder bench/generate.py builds")
    if not (args.taesd_dir / "config.json").is_file():
        raise PeerError(f"{args.taesd_dir} has no config.json: pass the TAESD folder next to the sd-turbo one")
    return args


def main(argv: list[str]) -> None:
    # The JSON lines keep the real stdout; everything else written to descriptor 1 (Python or native code)
    # goes to stderr, so a caller can read stdout line by line.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        args = parse_args(argv)
    except PeerError as error:
        raise SystemExit(f"openvino_peer: {error}") from None

    import torch

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)  # the scheduler and pre/post-processing run in torch
    model_dir, taesd_dir = args.model_dir.resolve(), args.taesd_dir.resolve()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    folder, export_s = export_pipeline(model_dir, taesd_dir, args.cache_dir.resolve())

    start = time.perf_counter()
    pipe = load_pipeline(folder, threads, args.precision)
    load_s = time.perf_counter() - start
    run, _ = make_runner(pipe)
    _, _, image = run()  # warm-up: the CPU plugin finishes its kernels on the first call
    if image.size != (SIZE, SIZE):
        raise SystemExit(f"openvino_peer: the image is {image.size}, not {SIZE}x{SIZE}")
    if args.save_png:
        image.save(args.save_png)

    figures: dict[str, Any] = {
        "openvino_version": version("openvino"),
        "optimum_intel_version": version("optimum-intel"),
        "export_s": round(export_s, 1),
        "load_s": round(load_s, 1),
        "threads": threads,
        "inference_precision": compiled_precisions(pipe),
        "ir_folder": str(folder),
    }
    if args.serve:
        serve(out, run, figures)
        return
    samples = [run()[:2] for _ in range(args.rounds)]
    median_s = statistics.median(seconds for seconds, _ in samples)
    median_stages = min(samples, key=lambda sample: abs(sample[0] - median_s))[1]
    emit(
        out,
        {
            "openvino_fast_s": round(median_s, 3),
            "openvino_cpu_s": round(statistics.median(stages["cpu_s"] for _, stages in samples), 3),
            "openvino_stages": median_stages,
            **figures,
            "rounds": args.rounds,
            "samples_s": [round(seconds, 3) for seconds, _ in samples],
        },
    )


if __name__ == "__main__":
    main(sys.argv[1:])
