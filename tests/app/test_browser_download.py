"""The first generation of a hub model not cached yet shows the model's download in the Create tab's
progress line (issue #15 item 2), in headless Chromium against `python app.py` downloading from the hub
stand-in on 127.0.0.1 (throttled, so the download can be watched). Screenshots go to test-output/."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.fixtures.app import RECORD_STAGES
from tests.fixtures.hub import hub_env
from tests.fixtures.paths import REPO_ROOT


def start_app(env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[str], str, list[str]]:
    """`python app.py` as a user runs it; its studio URL and the lines it prints (read as they come)."""
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "app.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=cwd,
    )
    lines: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if line.startswith("Running"):
            break
    studio = next((line.split(": ", 1)[1].strip().rstrip("/") for line in lines if line.startswith("Studio: ")), None)
    assert studio, "app.py did not start:\n" + "".join(lines[-60:])
    threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True).start()
    return process, studio, lines


@pytest.mark.browser
def test_first_generation_shows_the_model_download_with_bytes_rate_and_time_left(
    browser_page, hub, tiny_hub_repo, tiny_model_settings, tmp_path, output_dir: Path
) -> None:
    hub.bytes_per_second = sum(len(data) for data in tiny_hub_repo.files.values()) / 6  # some seconds to watch
    env = hub_env(
        hub,
        tmp_path / "hf-cache",
        tiny_model_settings,
        STUDIO_DATA_DIR=str(tmp_path / "studio-data"),
        STUDIO_CHAIN__LOCAL_PORT="0",
        STUDIO_APP__PORT="0",
        STUDIO_EVOLVE__ENABLED="false",
    )
    process, url, lines = start_app(env, tmp_path)
    try:
        page = browser_page
        page.goto(url + "/")
        page.locator("#generate").wait_for()
        banner = page.locator("#model-banner [data-model='download']")
        banner.wait_for(timeout=30_000)
        assert "the first generation downloads it" in banner.inner_text()
        page.evaluate(RECORD_STAGES)

        page.locator("#prompt textarea").fill("a lighthouse at dusk")
        page.locator("#generate").click()
        line = page.locator("#generate-status [data-stage='downloading']")
        line.wait_for(timeout=120_000)
        page.wait_for_function(
            "() => { const p = document.querySelector(\"#generate-status [data-stage='downloading'] progress\");"
            " return p && p.value > 0 && / left/.test(p.parentElement.textContent); }",
            timeout=60_000,
        )
        text = line.inner_text().strip()
        page.screenshot(path=str(output_dir / "1-downloading.png"), full_page=True)
        assert text.startswith("Downloading the model living-nft-studio-tests/tiny-sd-turbo: ")
        assert " of " in text, text
        assert "/s, about " in text, text
        assert text.endswith("left"), text

        page.locator("#draft-params").get_by_text("a lighthouse at dusk").wait_for(timeout=120_000)
        page.screenshot(path=str(output_dir / "2-done.png"), full_page=True)
        stages = page.evaluate("window.__stages")
        kinds = [entry.split(" ", 1)[0] for entry in stages]
        seen = " | ".join(stages)
        assert kinds.index("loading") < kinds.index("downloading"), seen
        after = kinds[len(kinds) - 1 - kinds[::-1].index("downloading") :]
        assert "loading" in after, seen
        assert after[-1] == "done", seen
        # Downloaded once: the banner has gone, and the log (the terminal) said how it went.
        assert page.locator("#model-banner [data-model]").count() == 0
        assert any("downloaded living-nft-studio-tests/tiny-sd-turbo" in entry for entry in lines), "".join(lines)
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
