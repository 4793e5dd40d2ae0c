"""A hub model not cached yet is downloaded with byte progress (studio/generation/download.py), from the
hub stand-in on 127.0.0.1 (tests/fixtures/hub.py), into the usual Hugging Face cache layout.

Downloads run in child studio processes: huggingface_hub reads HF_HUB_OFFLINE and the cache location
at import, and this process is offline."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from PIL import Image

from studio.generation import GenerationRequest
from studio.generation.download import DownloadProgress, human_bytes, human_duration, pipeline_files
from studio.generation.loading import model_availability
from tests.fixtures.hub import (
    GENERATE_REQUEST,
    NOT_FOR_PIPELINES,
    TINY_AUTOENCODER_REPO_ID,
    TINY_REPO_ID,
    HubRepo,
    hub_env,
    run_generate,
)
from tests.fixtures.paths import REPO_ROOT


def _pixels(png: bytes) -> bytes:
    return Image.open(io.BytesIO(png)).convert("RGB").tobytes()


def _downloads(report: dict) -> list[dict]:
    return [details for stage, details in report["stages"] if stage == "downloading"]


def _snapshot(cache, commit: str):
    return cache / f"models--{TINY_REPO_ID.replace('/', '--')}" / "snapshots" / commit


def test_first_generation_downloads_the_model_with_progress_and_makes_the_same_image(
    hub, tiny_hub_repo, tiny_hub_autoencoder, tiny_model_settings, engine, tmp_path
):
    served = sum(len(data) for data in tiny_hub_repo.files.values())
    hub.bytes_per_second = served / 2  # about a second for the pipeline's files: several updates
    cache = tmp_path / "hf-cache"
    # The fast preset's tiny autoencoder comes from the same hub (the same endpoint setting).
    env = hub_env(hub, cache, tiny_model_settings, STUDIO_MODEL__TINY_AUTOENCODER_ID=TINY_AUTOENCODER_REPO_ID)
    report = run_generate(env, tmp_path / "first", queued=True)
    assert "error" not in report, report

    # The image is the one the same model makes loaded from its folder.
    expected = engine.generate(GenerationRequest(**GENERATE_REQUEST))
    made = (tmp_path / "first" / "image.png").read_bytes()
    assert _pixels(made) == _pixels(expected.png)
    assert report["record"]["model_id"] == TINY_REPO_ID
    assert report["record"]["model_revision"] == tiny_hub_repo.commit  # the snapshot's commit
    assert report["record"]["decoder"] == TINY_AUTOENCODER_REPO_ID
    taesd = cache / f"models--{TINY_AUTOENCODER_REPO_ID.replace('/', '--')}" / "snapshots" / tiny_hub_autoencoder.commit
    assert sorted(p.name for p in taesd.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]

    # The files diffusers loads, in the HF cache layout, and nothing a pipeline does not need.
    snapshot = _snapshot(cache, tiny_hub_repo.commit)
    fetched = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())
    expected_files = pipeline_files(tiny_hub_repo.files, json.loads(tiny_hub_repo.files["model_index.json"]), None)
    assert fetched == expected_files
    assert "unet/diffusion_pytorch_model.safetensors" in fetched
    assert not [name for name in fetched if name in NOT_FOR_PIPELINES or ".fp16." in name]
    assert (cache / f"models--{TINY_REPO_ID.replace('/', '--')}" / "refs" / "main").read_text() == tiny_hub_repo.commit

    # Progress: bytes of the whole snapshot, going up to the total, with a rate and a sane time left.
    progress = [p for p in _downloads(report) if p["model"] == TINY_REPO_ID]
    total = sum(len(tiny_hub_repo.files[name]) for name in expected_files)
    assert _downloads(report)[-1]["model"] == TINY_AUTOENCODER_REPO_ID  # fetched after the model, also told
    assert len(progress) >= 3
    assert all(p["total_bytes"] == total for p in progress)
    done = [p["done_bytes"] for p in progress]
    assert done == sorted(done)
    assert done[-1] == total
    assert progress[-1]["finished"] is True
    assert progress[-1]["eta_s"] == 0
    assert all(p["eta_s"] is None or 0 <= p["eta_s"] < 3600 for p in progress)
    assert all(p["rate"] is None or p["rate"] > 0 for p in progress)
    assert any(p["rate"] for p in progress[:-1])
    assert {p["file"] for p in progress[:-1]} <= set(expected_files)
    stages = [stage for stage, _ in report["stages"]]
    first, last = stages.index("downloading"), len(stages) - 1 - stages[::-1].index("downloading")
    assert stages[first - 1] == "loading"
    assert stages[last + 1] == "loading"
    assert "downloading living-nft-studio-tests/tiny-sd-turbo" in report["log"]  # the log hears it too
    assert progress[-1]["summary"].endswith(", done")

    # A request sent meanwhile waits its turn and shows the same download meanwhile, with its place.
    queued = report["queued_stages"]
    waiting_downloads = [d for stage, d in queued if stage == "downloading" and d["model"] == TINY_REPO_ID]
    assert waiting_downloads
    assert all(d["position"] == 2 and d["ahead"] == 1 for d in waiting_downloads)
    assert all(d["total_bytes"] == total for d in waiting_downloads)
    assert [stage for stage, _ in queued][-1] == "decoding"  # and then it ran

    # A second start finds it cached: no file is fetched again, and no download stage is shown.
    fetched_before = [r for r in hub.requests if r[0] == "GET" and "/resolve/" in r[1]]
    again = run_generate(env, tmp_path / "second")
    assert "error" not in again, again
    assert [r for r in hub.requests if r[0] == "GET" and "/resolve/" in r[1]] == fetched_before
    assert "downloading" not in [stage for stage, _ in again["stages"]]

    # And offline (HF_HUB_OFFLINE=1) the cache alone serves both, asking the hub nothing.
    asked = len(hub.requests)
    offline = run_generate({**env, "HF_HUB_OFFLINE": "1"}, tmp_path / "offline")
    assert "error" not in offline, offline
    assert offline["record"]["decoder"] == TINY_AUTOENCODER_REPO_ID
    assert offline["record"]["model_revision"] == tiny_hub_repo.commit
    assert len(hub.requests) == asked

    # Online but with the hub out of reach (nothing listens there), the cache serves them too.
    unreachable = run_generate({**env, "STUDIO_MODEL__HUB_ENDPOINT": "http://127.0.0.1:9"}, tmp_path / "no-hub")
    assert "error" not in unreachable, unreachable
    assert unreachable["record"]["decoder"] == TINY_AUTOENCODER_REPO_ID
    assert "could not reach the hub" in unreachable["log"]


def test_interrupted_download_says_so_and_the_next_attempt_goes_on(hub, tiny_hub_repo, tiny_model_settings, tmp_path):
    cache = tmp_path / "hf-cache"
    env = hub_env(hub, cache, tiny_model_settings)
    unet = "unet/diffusion_pytorch_model.safetensors"
    hub.fail(unet, status=500, times=50)  # the hub keeps failing this file
    report = run_generate(env, tmp_path / "failed")
    error = report["error"]
    assert error["type"] == "ModelNotAvailableError"
    assert error["message"].startswith(f"Model '{TINY_REPO_ID}' is not available yet: the download of")
    assert f"while fetching {unet}" in error["message"]
    assert "generate again to go on from there" in error["message"]
    assert "Traceback" not in error["message"]

    # Until it is complete the studio does not call the model ready.
    monkey_env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "0"}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in monkey_env.items():
            mp.setenv(name, value)
        settings = tiny_model_settings.model_copy(update={"model_id": TINY_REPO_ID, "hub_endpoint": hub.url})
        state, message = model_availability(settings)
    assert state == "download", message
    assert message.startswith(f"Model {TINY_REPO_ID} is only partly on this machine (an interrupted download)")
    assert f"downloads the rest of it from {hub.url}" in message

    # Files before the failing one were kept; the next attempt fetches only the rest. A connection cut
    # mid-file is retried within the attempt (huggingface_hub resumes with a Range request past its 10 MB
    # read chunk; the tiny files are smaller, so they are fetched again whole).
    got_before = {path for method, path, _ in hub.requests if method == "GET" and "/resolve/" in path}
    kept = [name for name in tiny_hub_repo.files if any(p.endswith("/" + name) for p in got_before)]
    kept = [name for name in kept if name != unet]
    assert kept, "some files were downloaded before the failure"
    hub.heal()
    size = len(tiny_hub_repo.files[unet])
    hub.cut(unet, after=size // 2)
    requests_before = len(hub.requests)
    retried = run_generate(env, tmp_path / "retried")
    assert "error" not in retried, retried
    again = [r for r in hub.requests[requests_before:] if r[0] == "GET"]
    assert not [r for r in again if any(r[1].endswith("/" + name) for name in kept)]
    assert len(hub.gets(unet)) == 3  # the failed attempt's (500 is not retried), the cut one, the whole one
    progress = _downloads(retried)
    assert progress[0]["done_bytes"] >= sum(len(tiny_hub_repo.files[name]) for name in kept)
    assert progress[-1]["done_bytes"] == progress[-1]["total_bytes"]


def test_unknown_repo_online_says_the_hub_answer_after_the_fix(hub, tiny_model_settings, tmp_path):
    env = hub_env(hub, tmp_path / "hf-cache", tiny_model_settings)
    report = run_generate(env, tmp_path / "out")
    message = report["error"]["message"]
    assert report["error"]["type"] == "ModelNotAvailableError"
    assert message.startswith(f"Model '{TINY_REPO_ID}' is not available here: it could not be fetched")
    assert "hf download" in message
    assert "local diffusers folder" in message
    assert message.index("Get one in one of three ways") < message.index("Hub said")


_DIFFUSERS_DOWNLOAD = """
import json, sys
from pathlib import Path
from diffusers import DiffusionPipeline
result = {}
for variant in (None, "fp16"):
    cache = Path(sys.argv[1]) / str(variant)
    folder = Path(DiffusionPipeline.download(sys.argv[2], variant=variant, cache_dir=cache))
    result[str(variant)] = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
print(json.dumps(result))
"""


def test_the_files_chosen_are_the_ones_diffusers_downloads(hub, tiny_hub_repo, tmp_path):
    """DiffusionPipeline.download itself, against the same stand-in, fetches exactly the chosen files."""
    env = hub_env(hub, tmp_path / "unused", _NoModel(), HF_ENDPOINT=hub.url)
    done = subprocess.run(
        [sys.executable, "-c", _DIFFUSERS_DOWNLOAD, str(tmp_path / "diffusers-cache"), TINY_REPO_ID],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    by_diffusers = json.loads(done.stdout.strip().splitlines()[-1])
    index = json.loads(tiny_hub_repo.files["model_index.json"])
    assert by_diffusers["None"] == pipeline_files(tiny_hub_repo.files, index, None)
    assert by_diffusers["fp16"] == pipeline_files(tiny_hub_repo.files, index, "fp16")
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in by_diffusers["fp16"]


class _NoModel:
    device, dtype, preset, tiny_autoencoder_id, max_side = "cpu", "float32", "fast", "", 256


def test_a_variant_the_repo_lacks_is_refused_so_the_loader_falls_back(tiny_hub_folder):
    files = {p.relative_to(tiny_hub_folder).as_posix(): b"" for p in tiny_hub_folder.rglob("*") if p.is_file()}
    plain = {name: data for name, data in files.items() if ".fp16." not in name}
    index = json.loads((tiny_hub_folder / "model_index.json").read_text())
    with pytest.raises(ValueError, match="variant=fp16"):
        pipeline_files(plain, index, "fp16")
    assert pipeline_files(plain, index, None) == pipeline_files(files, index, None)


def test_progress_reads_as_a_person_says_it():
    progress = DownloadProgress(
        repo_id=TINY_REPO_ID,
        done_bytes=1_234_000_000,
        total_bytes=5_100_000_000,
        rate=24_000_000,
        eta_s=170,
        file="unet/diffusion_pytorch_model.fp16.safetensors",
        files_done=3,
        files_total=9,
    )
    assert progress.sentence() == "1.2 GB of 5.1 GB, 24 MB/s, about 3 min left"
    assert human_bytes(512) == "512 B"
    assert human_bytes(2_500) == "2.5 kB"
    assert human_bytes(345_000_000) == "345 MB"
    assert human_bytes(12_300_000_000) == "12 GB"
    assert human_duration(12) == "12 s"
    assert human_duration(3_900) == "1 h 5 min"


def test_model_download_command_prints_progress_and_leaves_the_model_ready(
    hub, tiny_hub_repo, tiny_hub_autoencoder, tiny_model_settings, tmp_path
):
    hub.bytes_per_second = sum(len(data) for data in tiny_hub_repo.files.values()) / 3  # a few lines' worth
    cache = tmp_path / "hf-cache"
    env = hub_env(hub, cache, tiny_model_settings, STUDIO_MODEL__TINY_AUTOENCODER_ID=TINY_AUTOENCODER_REPO_ID)
    done = subprocess.run(
        [sys.executable, "-m", "studio", "model", "download"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    model_lines = [line for line in lines if line.startswith(f"{TINY_REPO_ID}: ")]
    assert len(model_lines) >= 2, done.stdout
    assert all(" of 5" in line for line in model_lines)  # bytes of the whole snapshot (503 kB)
    assert any(line.endswith(" left") and "/s, about " in line for line in model_lines), done.stdout
    assert model_lines[-1].endswith(", done")
    assert any(line.startswith(f"{TINY_AUTOENCODER_REPO_ID}: ") for line in lines), done.stdout
    assert lines[-2:] == [
        f"ready: {_snapshot(cache, tiny_hub_repo.commit)}",
        f"ready: {cache / 'models--living-nft-studio-tests--tiny-taesd' / 'snapshots' / tiny_hub_autoencoder.commit}",
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_CACHE", str(cache))
        settings = tiny_model_settings.model_copy(update={"model_id": TINY_REPO_ID})
        assert model_availability(settings)[0] == "ready"

    hub.repos.clear()  # the hub no longer has it: the command says so, in the studio's words, exit 1
    gone = subprocess.run(
        [sys.executable, "-m", "studio", "model", "download"],
        env={**env, "HF_HUB_CACHE": str(tmp_path / "empty-cache")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert gone.returncode == 1
    said = gone.stderr.strip().splitlines()[-1]  # after the libraries' own import warnings
    assert said.startswith(f"Model '{TINY_REPO_ID}' is not available here"), gone.stderr[-2000:]
    assert "Traceback" not in gone.stderr


def test_hub_endpoint_setting_takes_a_base_url_and_names_the_fix_otherwise():
    from studio.config import ModelSettings

    assert ModelSettings(hub_endpoint=" https://hf-mirror.com/ ").hub_endpoint == "https://hf-mirror.com"
    assert ModelSettings(hub_endpoint="").hub_endpoint is None
    for bad in ("hf-mirror.com", "ftp://hf-mirror.com", "https://hf-mirror.com/?token=1"):
        with pytest.raises(ValueError, match=r"not an http\(s\) base URL: use one like https://hf-mirror.com"):
            ModelSettings(hub_endpoint=bad)
    with pytest.raises(ValueError, match="must not hold credentials: set HF_TOKEN"):
        ModelSettings(hub_endpoint="https://me:hf_secret@hf-mirror.com")


def test_xet_downloads_count_each_byte_once(tmp_path):
    """huggingface_hub's Xet reporter (the real hub serves most weights through Xet) reports bytes written
    and bytes received; the progress counts the written ones only, once."""
    import logging
    from types import SimpleNamespace

    from huggingface_hub.utils._xet_progress_reporting import XetDownloadProgressReporter

    from studio.generation.download import DownloadPlan, _bar_class, _Progress

    plan = DownloadPlan(repo_id=TINY_REPO_ID, commit="0" * 40, snapshot=tmp_path, sizes={"unet/weights": 1000})
    heard: list[DownloadProgress] = []
    progress = _Progress(plan, heard.append, min_interval_s=0)
    reporter = XetDownloadProgressReporter(
        total=1000, tqdm_class=_bar_class(progress), reconstruction_desc="unet/weights", log_level=logging.INFO
    )
    for written, received in ((300, 200), (1000, 640)):
        reporter.update_progress(
            SimpleNamespace(
                total_bytes=1000,
                total_bytes_completed=written,
                total_transfer_bytes_completed=received,
                total_bytes_completion_rate=None,
                total_transfer_bytes_completion_rate=None,
            )
        )
    reporter.close()
    assert [p.done_bytes for p in heard] == [300, 1000]


def _native_bf16() -> bool:
    from studio.generation.cpu import cpu_capabilities

    return cpu_capabilities().native_bf16


@pytest.mark.skipif(not _native_bf16(), reason="half precision on CPU needs native bf16 (float32 is tested above)")
def test_half_precision_downloads_the_fp16_files_and_falls_back_when_a_repo_has_none(
    hub, tiny_hub_repo, tiny_model_settings, tmp_path
):
    index = json.loads(tiny_hub_repo.files["model_index.json"])
    cache = tmp_path / "hf-cache"
    env = hub_env(hub, cache, tiny_model_settings, STUDIO_MODEL__DTYPE="bfloat16")
    report = run_generate(env, tmp_path / "fp16")
    assert "error" not in report, report
    snapshot = _snapshot(cache, tiny_hub_repo.commit)
    fetched = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())
    assert fetched == pipeline_files(tiny_hub_repo.files, index, "fp16")
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in fetched
    assert "unet/diffusion_pytorch_model.safetensors" not in fetched
    assert report["record"]["dtype"] == "bfloat16"

    # A repo without fp16 files: the full-precision ones, as before (loaded in bf16).
    plain = {name: data for name, data in tiny_hub_repo.files.items() if ".fp16." not in name}
    plain_repo = hub.publish(HubRepo("living-nft-studio-tests/tiny-sd-plain", plain))
    report = run_generate(
        {**env, "STUDIO_MODEL__MODEL_ID": "living-nft-studio-tests/tiny-sd-plain"}, tmp_path / "plain"
    )
    assert "error" not in report, report
    folder = cache / "models--living-nft-studio-tests--tiny-sd-plain" / "snapshots" / plain_repo.commit
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert report["record"]["model_revision"] == plain_repo.commit
