"""Generation speed and memory on CPU: plain diffusers defaults against the engine's fast and quality presets.

The model is the sd-turbo architecture at full size with random weights (SD 2.1 UNet, OpenCLIP ViT-H
text tower as a CLIPTextModel, SD VAE, TAESD), built in code and saved to a temporary folder the way
the hub ships sd-turbo (fp32 files plus an fp16 variant), then loaded through the engine. Random
weights have the same FLOPs and memory as the real ones. 512x512, 1 step, guidance 0 (sd-turbo's use).

Prints ONE JSON line:
  default_s, fast_s, quality_s        one image each: the median of 9 rounds after one warm-up run, seconds
                                      of the pipeline call (text encoder, UNet, decoder; not the PNG encoding);
                                      in each round the default, fast, quality and both img2img requests take
                                      turns, so all are measured side by side under the same machine load.
                                      The engine runs with the settings a user gets by default (memory
                                      'auto': 'balanced' in float32 on a machine with 12 GiB of RAM or more)
  memory                              what memory 'auto' chose here (speed, balanced or low)
  fast_ratio, quality_ratio           against default_s (targets: <= 0.15 and <= 0.5)
  img2img_s, txt2img_same_evals_s     fast preset, strength 0.5 x 2 steps vs text-to-image 1 step; the
                                      init image is a PNG the engine made (evolution's case), so img2img
                                      starts from the latents it carries
  img2img_ratio                       img2img_s / txt2img_same_evals_s (target: <= 1)
  img2img_from_pixels_s, _ratio       the same from an image made elsewhere: its pixels are encoded first
  cpu_optimizations                   what the engine applied on this CPU (prepacked weights, blocked attention)
  fast_stock_kernels_s, _ratio        fast_s with those switched off (model.cpu_optimizations = false), and
                                      its ratio to an all-on engine taking turns with it (above 1: they pay)
  fast_peak_rss_gib                   peak RSS of a fresh process that loads the model through the
                                      engine (memory 'auto') and makes one fast 512x512 image (target: <= 5)
  fast_without_s, fast_without_ratio  fast_s with each optimization of this CPU's plan left off, one at a time
                                      (e.g. {"prepack_convs": 1.9}), and its ratio to an all-on engine taking
                                      turns with it: an optimization that stops paying on a CPU class shows
                                      here as a ratio below 1
  fast_load_s                         the peak-RSS child's load time (read, convert, prepack), its files
                                      read into the page cache just before (as after a fresh build)
  fast_load_cpu_s                     the CPU seconds of that load (all threads): the loader's own work,
                                      which a slow disk or a dropped page cache does not move
  low_memory_fast_s, _ratio,          STUDIO_MODEL__MEMORY=low (float32 models only: weights kept in float16,
  low_memory_peak_rss_gib,            computed in float32; 'auto' picks it below 12 GiB of RAM): fast seconds
  low_memory_load_s                   taking turns in the same rounds, and its own fresh process's peak and load
  speed_memory_fast_s, _peak_rss_gib, STUDIO_MODEL__MEMORY=speed (every part of the model in float32 with the
  speed_memory_load_s,                CPU optimizations; 'balanced', auto's choice in float32 with enough RAM, keeps
  fast_vs_speed_memory                the text encoder and VAE in float16 and takes F(2x2,3x3) Winograd for the
                                      UNet's convolutions): fast seconds taking turns with the
                                      default engine as fast_stock_kernels_s does, and its own fresh process's peak
                                      and load; fast_vs_speed_memory = auto's seconds / speed's, paired (1.0 where
                                      auto is speed: bfloat16)
  openvino_fast_s, fast_vs_openvino   the peer, FastSD CPU's way: the same model exported by optimum-intel
                                      to OpenVINO with TAESD as decoder (bench/openvino_peer.py in its own
                                      venv, .venv-openvino, made by `make bench`), taking turns in the same
                                      rounds, in the engine's precision; fast_vs_openvino = fast_s / theirs
                                      (target <= 1). null, with openvino_skipped saying why, without that venv
  stages                              seconds per stage (text_encoder, unet, encoder, decoder) per run
  cpu_model, cpu_class, isa_flags,    where it ran: the CPU, the class the engine chose its kernels by, the
  aten_capability, onednn_bf16,       ISA flags that matter, what ATen and oneDNN use in this process (held
  isa_limit, torch, onednn, threads   back by ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY: isa_limit), versions
Usage: .venv/bin/python bench/generate.py   (about 10 minutes; about 9 GiB of memory at its peak, 15 with the peer)
       BENCH_GENERATE_ROUNDS=5 takes fewer rounds (default 9) for a quicker, noisier figure.
       BENCH_GENERATE_DIR=/tmp/x keeps the built model and the peer's OpenVINO export there for the next run
       (the export takes about 13 minutes on 2 cores the first time).
       ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 .venv/bin/python bench/generate.py measures a bigger
       x86-64 CPU as an AVX2-only one (AVX2 kernels, no bf16 instructions), the peer included.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from studio.config import ModelSettings
    from studio.generation import Engine, GenerationRequest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Rounds of the five measured requests (default, fast, quality, two img2img), taking turns; each figure is
# the median of its rounds. Run one after the other, the fp32 default alone swung from 10.5 to 12.9 s
# between bench runs, and 5 rounds left img2img_ratio, two nearly equal times, anywhere in 0.99-1.02.
ROUNDS = int(os.environ.get("BENCH_GENERATE_ROUNDS", "9"))
RUNS = 5  # timed pairs of the all-on engine against one with something off
SIZE = 512
PROMPT = "a lighthouse on a cliff at dawn, oil painting"


def build_full_size_model(folder: Path) -> Path:
    """Save the random full-size sd-turbo architecture (fp32 + fp16 variant) and TAESD; return TAESD's folder."""
    import torch
    from diffusers import (
        AutoencoderKL,
        AutoencoderTiny,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from tests.fixtures.generation import turbo_pipeline

    torch.manual_seed(0)
    unet = UNet2DConditionModel(  # stabilityai/sd-turbo unet/config.json (SD 2.1)
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=1024,
        attention_head_dim=(5, 10, 20, 20),
        use_linear_projection=True,
    )
    text_encoder = CLIPTextModel(  # OpenCLIP ViT-H/14 text tower as sd-turbo ships it
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=1024,
            intermediate_size=4096,
            num_attention_heads=16,
            num_hidden_layers=23,
            projection_dim=512,
            hidden_act="gelu",
            max_position_embeddings=77,
        )
    )
    vae = AutoencoderKL(  # the SD VAE
        in_channels=3,
        out_channels=3,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        sample_size=768,
    )
    pipe = turbo_pipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer_dir=folder / "tokenizer-source")
    model_dir = folder / "sd-turbo-random"
    # As the hub ships sd-turbo: an fp16 variant beside the fp32 files. The fp32 save comes last so the
    # configs say float32 (transformers 5 loads a text encoder in the dtype its config names).
    pipe.to(torch.float16)
    pipe.save_pretrained(model_dir, variant="fp16")
    pipe.to(torch.float32)
    pipe.save_pretrained(model_dir)
    del pipe, unet, text_encoder, vae
    gc.collect()
    taesd_dir = folder / "taesd"
    AutoencoderTiny().save_pretrained(taesd_dir)  # the madebyollin/taesd architecture
    return taesd_dir


def engine_settings(model_dir: Path, taesd_dir: Path, memory: str = "auto"):
    """The engine's settings on auto dtype; memory 'auto' (the default figures: what a user gets on this
    machine), 'speed' (the speed_memory_* figures) or 'low' (the low_memory_* figures)."""
    from studio.config import ModelSettings

    return ModelSettings(
        model_id=str(model_dir), tiny_autoencoder_id=str(taesd_dir), device="cpu", dtype="auto", memory=memory
    )


def child_fast_peak(model_dir: str, taesd_dir: str, memory: str) -> None:
    """In a fresh process: load through the engine, make one fast 512x512 image, print peak RSS."""
    from studio.generation import Engine, GenerationRequest

    engine = Engine(engine_settings(Path(model_dir), Path(taesd_dir), memory))
    cpu_start = time.process_time()
    engine.load()
    load_cpu_s = time.process_time() - cpu_start
    result = engine.generate(GenerationRequest(prompt=PROMPT, seed=1, steps=1, width=SIZE, height=SIZE, preset="fast"))
    peak_kib = peak_rss_kib()
    figures = {"peak_rss_gib": peak_kib / 2**20, "dtype": result.record["dtype"], "load_s": engine.load_seconds}
    print(json.dumps({**figures, "load_cpu_s": load_cpu_s}))


def peak_rss_kib() -> int:
    """This process's peak resident set, in KiB.

    On Linux, VmHWM: ru_maxrss is inherited through fork and exec, so a child started while the
    parent held the freshly built model reported the parent's 5.3 GiB instead of its own 3.4."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; elsewhere a fallback


def default_pipeline(model_dir: Path) -> Callable[[], tuple[float, dict[str, float]]]:
    """diffusers' plain default (from_pretrained in fp32, full VAE, no tuning), as a function that makes one
    image and returns its seconds and stage timings."""
    import torch
    from diffusers import StableDiffusionPipeline

    from studio.generation.engine import _StageTimer

    pipe = StableDiffusionPipeline.from_pretrained(
        model_dir, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)

    def run() -> tuple[float, dict[str, float]]:
        timer = _StageTimer()
        start = time.perf_counter()
        with (
            timer.module("text_encoder", pipe.text_encoder),
            timer.module("unet", pipe.unet),
            timer.method("decoder", pipe.vae, "decode"),
        ):
            pipe(
                PROMPT,
                num_inference_steps=1,
                guidance_scale=0.0,
                width=SIZE,
                height=SIZE,
                generator=torch.Generator("cpu").manual_seed(1),
            )
        return time.perf_counter() - start, timer.seconds

    return run


def engine_run(engine: Engine, request: GenerationRequest) -> Callable[[], tuple[float, dict[str, float]]]:
    """A function that makes the request's image and returns its pipeline seconds and stage timings."""

    def run() -> tuple[float, dict[str, float]]:
        timings = engine.generate(request).timings
        return timings["pipeline"], timings

    return run


def median_run(run: Callable[[], tuple[float, dict[str, float]]]) -> tuple[float, dict[str, float]]:
    """The median of RUNS runs: one sample swings by a third on a shared 2-core machine."""
    return median_sample([run() for _ in range(RUNS)])


def median_sample(samples: list[tuple[float, dict[str, float]]]) -> tuple[float, dict[str, float]]:
    """The (seconds, stage timings) sample of median seconds."""
    return sorted(samples, key=lambda sample: sample[0])[len(samples) // 2]


def stage_split(timings: dict[str, float]) -> dict[str, float]:
    return {key: round(timings[key], 3) for key in ("text_encoder", "unet", "encoder", "decoder") if key in timings}


def machine_figures() -> dict[str, object]:
    """Where the bench ran: the CPU, its class and ISA flags, the ISA limits, torch and oneDNN versions."""
    import torch

    from studio.generation.cpu import cpu_capabilities

    onednn = re.search(r"(?:MKL-DNN|oneDNN) v([0-9.]+)", torch.__config__.show())
    limits = {name: os.environ[name] for name in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if name in os.environ}
    return {
        **cpu_capabilities().describe(),
        "isa_limit": limits or None,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "onednn": onednn.group(1) if onednn else None,
    }


class OpenVinoPeer:
    """bench/openvino_peer.py in its own venv, in --serve mode: one image per run(), so that its rounds
    take turns with the engine's under the same machine load."""

    def __init__(self, model_dir: Path, taesd_dir: Path, cache_dir: Path, precision: str, log_path: Path) -> None:
        self._log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115  # closed in close()
        self._process = subprocess.Popen(
            [
                *(str(path) for path in (PEER_PYTHON, PEER_SCRIPT, model_dir, taesd_dir, cache_dir)),
                *("--serve", "--precision", precision),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.ready = self._answer()  # after the export (first time) and the warm-up
        if not self.ready.get("ready"):
            raise RuntimeError(f"the OpenVINO peer did not start: {self.ready}")

    def _answer(self) -> dict:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self._log.flush()
            raise RuntimeError(f"the OpenVINO peer exited; its log: {Path(self._log.name).read_text()[-3000:]}")
        return json.loads(line)

    def run(self) -> tuple[float, dict[str, float]]:
        assert self._process.stdin is not None
        self._process.stdin.write("run\n")
        self._process.stdin.flush()
        answer = self._answer()
        return answer["openvino_fast_s"], answer.get("openvino_stages", {})

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self._process.stdin is not None
            self._process.stdin.write("quit\n")
            self._process.stdin.close()
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._log.close()


PEER_PYTHON = Path(__file__).resolve().parent.parent / ".venv-openvino" / "bin" / "python"
PEER_SCRIPT = Path(__file__).resolve().parent / "openvino_peer.py"


def read_into_page_cache(folder: Path) -> None:
    """Read every file of the folder once, so that a child's load time is the loader's work (read from
    memory, convert, prepack), as right after the model was built, rather than the disk's: on the shared
    machine the kernel's reclaimer had dropped a kept model's files between runs, and the same load
    took 93 s instead of 16. The reclaimer may still drop them before the child reads them (a bf16 load
    took 54 s and then 18 s right after it): fast_load_cpu_s is the figure the disk does not move."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with path.open("rb") as handle:
                while handle.read(16 << 20):
                    pass


def fast_peak_in_child(model_dir: Path, taesd_dir: Path, memory: str) -> dict:
    """child_fast_peak's figures, from a fresh process (the model's files read into the page cache first)."""
    read_into_page_cache(model_dir)
    read_into_page_cache(taesd_dir)
    child = subprocess.run(
        [sys.executable, __file__, "--child-fast", str(model_dir), str(taesd_dir), memory],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if child.returncode != 0:
        raise SystemExit(f"the peak-RSS child ({memory}) failed:\n{child.stderr[-4000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def measure_against_all_on(
    settings: ModelSettings,
    request: GenerationRequest,
    plan_fields: list[str],
    others: dict[str, ModelSettings] | None = None,
) -> tuple[float, float, dict[str, float], dict[str, float]]:
    """fast seconds with the CPU optimizations off, and with each one of the plan left off in turn, each
    taking turns with an engine that has them all on (RUNS pairs): a figure measured minutes after
    fast_s on a shared machine says more about the machine than about the optimization. `others`:
    more settings measured the same way, under their names.

    Returns (stock seconds, stock / all-on, {name: seconds without it}, {name: without / all-on}):
    a ratio above 1 is what an optimization saves."""
    from studio.generation import Engine

    all_on = Engine(settings)
    all_on.generate(request)  # warm-up
    variants = {"stock": settings.model_copy(update={"cpu_optimizations": False}), **(others or {})}
    seconds: dict[str, float] = {}
    ratios: dict[str, float] = {}
    for name in ["stock", *plan_fields, *(others or {})]:
        other = Engine(variants.get(name, settings), skip_cpu_optimizations=[] if name in variants else [name])
        other.generate(request)  # warm-up
        with_s, without_s = [], []
        for _ in range(RUNS):
            with_s.append(all_on.generate(request).timings["pipeline"])
            without_s.append(other.generate(request).timings["pipeline"])
        seconds[name] = round(median_sample([(s, {}) for s in without_s])[0], 3)
        ratios[name] = round(seconds[name] / median_sample([(s, {}) for s in with_s])[0], 3)
        del other
        gc.collect()
    stock_s, stock_ratio = seconds.pop("stock"), ratios.pop("stock")
    return stock_s, stock_ratio, seconds, ratios


def main() -> None:
    import torch

    from studio.generation import Engine, GenerationRequest, init_image_from_png
    from studio.generation.cpu import OPTIMIZATIONS, plan_for
    from studio.generation.devices import resolve_memory, resolve_placement

    keep = os.environ.get("BENCH_GENERATE_DIR")  # reuse a built model between runs (development)
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        root = Path(keep) if keep else Path(tmp)
        model_dir = root / "sd-turbo-random"
        build_start = time.perf_counter()
        if keep and (model_dir / "model_index.json").exists():
            taesd_dir = root / "taesd"
        else:
            taesd_dir = build_full_size_model(root)
        build_s = time.perf_counter() - build_start
        gc.collect()

        # What memory 'auto' is here: 'balanced' in float32 with enough RAM, 'speed' in bfloat16.
        memory = resolve_memory("auto", "cpu", resolve_placement("cpu", "auto").dtype)
        child_figures = fast_peak_in_child(model_dir, taesd_dir, "auto")
        speed_memory_figures = child_figures if memory == "speed" else fast_peak_in_child(model_dir, taesd_dir, "speed")
        low_memory_figures = fast_peak_in_child(model_dir, taesd_dir, "low")

        run_default = default_pipeline(model_dir)
        engine = Engine(engine_settings(model_dir, taesd_dir))
        engine.load()

        txt = dict(prompt=PROMPT, seed=1, width=SIZE, height=SIZE)
        # Evolution's case: img2img from the PNG of an image this engine made (it carries its latents).
        init_image, init_latents = init_image_from_png(engine.generate(GenerationRequest(**txt, steps=1)).png)
        img2img = dict(prompt=PROMPT, seed=1, init_image=init_image, strength=0.5, steps=2, preset="fast")
        requests = {
            "fast": GenerationRequest(**txt, steps=1, preset="fast"),
            "quality": GenerationRequest(**txt, steps=1, preset="quality"),
            "img2img": GenerationRequest(**img2img, init_latents=init_latents),
            # An image from elsewhere (no latents chunk): its pixels go through the VAE encoder first.
            "img2img_from_pixels": GenerationRequest(**img2img),
        }
        runs = {"default": run_default, **{name: engine_run(engine, request) for name, request in requests.items()}}
        low_memory = None
        if engine.describe()["dtype"] == "float32":  # float16 weight storage is for float32 models
            low_memory = Engine(engine_settings(model_dir, taesd_dir, "low"))
            runs["fast_low_memory"] = engine_run(low_memory, requests["fast"])
        peer, peer_skipped = None, None
        if PEER_PYTHON.exists():
            precision = "f32" if engine.describe()["dtype"] == "float32" else "default"  # the engine's own
            peer = OpenVinoPeer(model_dir, taesd_dir, root / "openvino-ir", precision, root / "openvino-peer.log")
            runs["openvino"] = peer.run
        else:
            peer_skipped = "no .venv-openvino: `make bench` (or `make .venv-openvino/.installed`) makes it"
        for run in runs.values():
            run()  # warm-up: oneDNN builds its kernels on the first call
        # Round-robin, so that a slow spell of the shared machine falls on every figure alike.
        samples: dict[str, list[tuple[float, dict[str, float]]]] = {name: [] for name in runs}
        for _ in range(ROUNDS):
            for name, run in runs.items():
                samples[name].append(run())
        if peer is not None:
            peer.close()
        medians = {name: median_sample(found) for name, found in samples.items()}
        openvino_s = medians["openvino"][0] if peer is not None else None
        default_s, default_stages = medians["default"]
        fast_s, fast_t = medians["fast"]
        quality_s, quality_t = medians["quality"]
        img2img_s, img2img_t = medians["img2img"]
        pixels_s, pixels_t = medians["img2img_from_pixels"]
        txt_same_s = fast_s  # one denoising evaluation each: text-to-image 1 step, img2img 2 steps x 0.5
        low_memory_s = medians["fast_low_memory"][0] if low_memory is not None else None
        described = engine.describe()
        del run_default, runs, engine, low_memory
        gc.collect()

        plan = plan_for(getattr(torch, described["dtype"]))
        applied = [name for name in sorted(OPTIMIZATIONS) if getattr(plan, name)]
        settings = engine_settings(model_dir, taesd_dir)
        # Memory 'speed' beside auto's choice: paired with the all-on engine (not in the rounds above,
        # where a third float32 engine would not fit beside the others in 24 GiB).
        others = {"speed_memory": settings.model_copy(update={"memory": "speed"})} if memory != "speed" else {}
        stock_fast_s, stock_ratio, without, without_ratio = measure_against_all_on(
            settings, requests["fast"], applied, others
        )
        speed_memory_s = without.pop("speed_memory", None)
        speed_memory_ratio = without_ratio.pop("speed_memory", 1.0)  # speed memory / auto's, paired

        figures = {
            "bench": "generate",
            "model": "sd-turbo architecture, random weights",
            "size": SIZE,
            "steps": 1,
            "device": "cpu",
            **machine_figures(),
            "engine_dtype": described["dtype"],
            "memory": memory,
            "default_s": round(default_s, 3),
            "fast_s": round(fast_s, 3),
            "quality_s": round(quality_s, 3),
            "fast_ratio": round(fast_s / default_s, 3),
            "quality_ratio": round(quality_s / default_s, 3),
            "img2img_s": round(img2img_s, 3),
            "txt2img_same_evals_s": round(txt_same_s, 3),
            "img2img_ratio": round(img2img_s / txt_same_s, 3),
            "img2img_from_pixels_s": round(pixels_s, 3),
            "img2img_from_pixels_ratio": round(pixels_s / txt_same_s, 3),
            "cpu_optimizations": described["cpu_optimizations"],
            "fast_stock_kernels_s": round(stock_fast_s, 3),
            "fast_stock_kernels_ratio": stock_ratio,
            "fast_without_s": without,
            "fast_without_ratio": without_ratio,
            "openvino_fast_s": round(openvino_s, 3) if openvino_s is not None else None,
            "fast_vs_openvino": round(fast_s / openvino_s, 3) if openvino_s else None,
            "openvino_skipped": peer_skipped,
            "fast_peak_rss_gib": round(child_figures["peak_rss_gib"], 2),
            "fast_load_s": round(child_figures["load_s"], 1),
            "fast_load_cpu_s": round(child_figures["load_cpu_s"], 1),
            "low_memory_fast_s": round(low_memory_s, 3) if low_memory_s is not None else None,
            "low_memory_fast_ratio": round(low_memory_s / default_s, 3) if low_memory_s is not None else None,
            "low_memory_peak_rss_gib": round(low_memory_figures["peak_rss_gib"], 2),
            "low_memory_load_s": round(low_memory_figures["load_s"], 1),
            "speed_memory_fast_s": speed_memory_s if speed_memory_s is not None else round(fast_s, 3),
            "speed_memory_peak_rss_gib": round(speed_memory_figures["peak_rss_gib"], 2),
            "speed_memory_load_s": round(speed_memory_figures["load_s"], 1),
            "fast_vs_speed_memory": round(1 / speed_memory_ratio, 3),
            "stages": {
                "default": stage_split(default_stages),
                "fast": stage_split(fast_t),
                "quality": stage_split(quality_t),
                "img2img_fast": stage_split(img2img_t),
                "img2img_fast_from_pixels": stage_split(pixels_t),
                **({"openvino": medians["openvino"][1]} if peer is not None else {}),
                **({"fast_low_memory": stage_split(medians["fast_low_memory"][1])} if low_memory_s else {}),
            },
            **({"openvino_version": peer.ready.get("openvino_version")} if peer is not None else {}),
            "build_s": round(build_s, 1),
        }
        print(json.dumps(figures))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child-fast":
        child_fast_peak(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
