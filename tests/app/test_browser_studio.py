"""The studio as an artist uses it, in headless Chromium against the real app and anvil (issue #15):
errors that stay where the user acted, freeze, duplicate mints, honest progress and the queue, the
evolution's steps, the gallery's living tokens. Screenshots go to test-output/<test name>/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.app import RECORD_STAGES

ERROR_BADGES = "[data-testid='status-tracker'] span.error"  # what Gradio draws on outputs when a handler raises
TOASTS = ".toast-body"


def open_studio(page, url: str) -> None:
    page.goto(url + "/")
    page.locator("#generate").wait_for()


def open_mint_tab(page) -> None:
    """The Mint tab, once the page's load event has filled it (drafts, rules, the wallet placeholder)."""
    page.get_by_role("tab", name="Mint").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#mint-recipient input, #mint-recipient textarea')]"
        ".some(e => e.placeholder.includes('wallet'))",
        timeout=30_000,
    )


def generate(page, prompt: str) -> None:
    page.locator("#prompt textarea").fill(prompt)
    page.locator("#generate").click()
    page.locator("#draft-params").get_by_text(prompt).wait_for()


def assert_no_bare_errors(page) -> None:
    assert page.locator(ERROR_BADGES).count() == 0, "an output shows Gradio's bare 'Error' badge"
    assert page.locator(TOASTS).count() == 0, "an error went to a toast that closes by itself"


@pytest.mark.browser
def test_errors_stay_where_the_user_acted_in_the_studios_words(
    browser_page, app_server, write_rules, weather_rules_text, output_dir: Path
) -> None:
    page = browser_page
    write_rules("weather", weather_rules_text.replace("strength = 0.5", "strength = 3"))
    open_studio(page, app_server.url)

    page.locator("#generate").click()
    error = page.locator("#generate-error .studio-error")
    error.get_by_text("Type a prompt first").wait_for(timeout=20_000)
    page.wait_for_timeout(30_000)  # a toast closes after about 10 s; the message must still be there
    assert error.is_visible()
    assert_no_bare_errors(page)
    page.screenshot(path=str(output_dir / "1-create-error.png"), full_page=True)

    # The next action there replaces it.
    generate(page, "a lighthouse on a cliff")
    assert page.locator("#generate-error .studio-error").count() == 0

    page.get_by_role("tab", name="Mint").click()
    page.locator("#mint-recipient input, #mint-recipient textarea").first.fill("0xnope")
    page.locator("#mint-button").click()
    page.locator("#mint-error .studio-error").get_by_text("is not an Ethereum address").wait_for()
    assert_no_bare_errors(page)
    page.screenshot(path=str(output_dir / "2-mint-error.png"), full_page=True)

    page.get_by_role("tab", name="Evolve").click()
    page.locator("#rules-editor").get_by_text("strength = 3").wait_for()
    page.locator("#rules-save").click()
    message = page.locator("#rules-message")
    message.locator(".studio-error").get_by_text("evolution.strength").wait_for()
    assert "weather.toml:" in message.inner_text()
    assert "edit the example" not in message.inner_text()
    assert_no_bare_errors(page)
    page.screenshot(path=str(output_dir / "3-rules-error.png"), full_page=True)
    assert page.outside_requests == []  # type: ignore[attr-defined]


@pytest.mark.browser
def test_freeze_keeps_its_confirmation_usable_and_everything_says_frozen_after(
    browser_page, app_server, write_rules, weather_rules_text, output_dir: Path
) -> None:
    from tests.fixtures.evolve import mint_living

    page = browser_page
    write_rules("weather", weather_rules_text)
    [token_id] = mint_living(app_server.studio, 1)
    open_studio(page, app_server.url)
    page.get_by_role("tab", name="Collection").click()
    page.locator("#collection-refresh").click()
    page.locator("#token-header").get_by_text(f"#{token_id}").first.wait_for()

    page.locator("#freeze").click()
    page.locator("#freeze-error .studio-error").get_by_text("Tick the box to confirm").wait_for(timeout=20_000)
    assert_no_bare_errors(page)
    page.screenshot(path=str(output_dir / "1-freeze-unconfirmed.png"), full_page=True)
    page.locator("#freeze-confirm input[type=checkbox]").check(timeout=10_000)  # not covered by anything
    page.locator("#freeze").click()
    page.locator("#freeze-done").wait_for(timeout=60_000)
    assert app_server.studio.chain.client.is_frozen(token_id)

    page.locator("#freeze").get_by_text("Frozen for good").wait_for(timeout=20_000)
    assert page.locator("#freeze").is_disabled()
    assert page.locator("#freeze-confirm input[type=checkbox]").is_disabled()
    assert "frozen" in page.locator("#collection-token input").input_value()
    page.locator("#collection-grid").get_by_text(f"#{token_id}").first.wait_for()
    assert "frozen" in page.locator("#collection-grid").inner_text()
    assert "living" not in page.locator("#collection-grid").inner_text()
    page.get_by_text("On-chain history").click()
    page.locator("#chain-history").get_by_text("PermanentURI").wait_for(timeout=20_000)
    page.screenshot(path=str(output_dir / "2-frozen.png"), full_page=True)


@pytest.mark.browser
def test_minting_the_same_draft_again_is_refused_until_another_edition_is_asked_for(
    browser_page, app_server, output_dir: Path
) -> None:
    from studio.services.drafts import create_draft
    from studio.services.tokens import list_tokens

    page = browser_page
    draft = create_draft(app_server.studio, prompt="a red kite over dunes", seed=4, width=64, height=64).draft
    open_studio(page, app_server.url)
    open_mint_tab(page)
    name = page.locator("#mint-name input, #mint-name textarea").first
    name.fill("Kite")
    page.locator("#mint-button").click()
    page.locator("#mint-result").get_by_text("Minted", exact=True).wait_for()
    [first] = list_tokens(app_server.studio)
    assert f"#{draft.id} became token #{first.token_id}" in page.locator("#mint-result").inner_text()
    # The form is emptied, and the draft says what it became.
    assert name.input_value() == ""
    page.locator("#mint-draft-notice").get_by_text(f"token #{first.token_id}").wait_for(timeout=20_000)
    page.screenshot(path=str(output_dir / "1-minted.png"), full_page=True)

    name.fill("Kite again")
    page.locator("#mint-button").click()
    page.locator("#mint-error .studio-error").get_by_text("already minted as token").wait_for(timeout=30_000)
    assert len(list_tokens(app_server.studio)) == 1  # nothing sent
    page.screenshot(path=str(output_dir / "2-second-mint-warned.png"), full_page=True)

    page.locator("#mint-another input[type=checkbox]").check()
    page.locator("#mint-button").click()
    page.locator("#mint-result").get_by_text("another edition").wait_for()
    tokens = list_tokens(app_server.studio)
    assert len(tokens) == 2
    assert {t.draft_id for t in tokens} == {draft.id}
    page.screenshot(path=str(output_dir / "3-another-edition.png"), full_page=True)


@pytest.mark.browser
def test_generation_shows_its_real_stages_once_and_the_queue_across_two_tabs(
    browser_page, app_server, output_dir: Path
) -> None:
    import threading

    from studio.generation import GenerationRequest

    page = browser_page
    engine = app_server.studio.engine
    holding, release = threading.Event(), threading.Event()

    def hold(step: int, total: int) -> None:  # another generation (as the scheduler's) holds the engine
        holding.set()
        release.wait(timeout=120)

    other = threading.Thread(
        target=engine.generate,
        args=(GenerationRequest(prompt="held", seed=1, width=64, height=64),),
        kwargs={"progress": hold},
    )
    other.start()
    try:
        assert holding.wait(timeout=120)
        open_studio(page, app_server.url)
        second = page.context.new_page()
        open_studio(second, app_server.url)
        page.evaluate(RECORD_STAGES)

        page.locator("#prompt textarea").fill("first tab: a harbour at night")
        page.locator("#generate").click()
        page.locator("#generate-status").get_by_text("1 generation ahead of this one (queue position 2)").wait_for(
            timeout=30_000
        )
        second.locator("#prompt textarea").fill("second tab: a harbour at dawn")
        second.locator("#generate").click()
        second.locator("#generate-status").get_by_text("2 generations ahead").wait_for(timeout=30_000)
        # One status line, not a progress bar drawn over every output.
        assert second.locator("#generate-status .studio-status").count() == 1
        assert second.locator("[data-testid='status-tracker'] .progress-text, .eta-bar").count() == 0
        second.screenshot(path=str(output_dir / "1-second-tab-queued.png"), full_page=True)
        page.screenshot(path=str(output_dir / "2-first-tab-queued.png"), full_page=True)
    finally:
        release.set()
        other.join(timeout=120)

    page.locator("#draft-params").get_by_text("first tab: a harbour at night").wait_for()
    second.locator("#draft-params").get_by_text("second tab: a harbour at dawn").wait_for()
    stages = [entry.split(" ", 1)[0] for entry in page.evaluate("window.__stages")]
    names = [entry.split(" ", 2)[:2] for entry in page.evaluate("window.__stages")]
    seen = " | ".join(page.evaluate("window.__stages"))
    assert "waiting" in stages, seen
    assert ["encoding", "prompt"] in names, seen
    assert any("Denoising: step 1 of 1" in entry for entry in page.evaluate("window.__stages")), seen
    assert "decoding" in stages, seen
    assert "saving" in stages, seen
    assert stages[-1] == "done", seen
    page.screenshot(path=str(output_dir / "3-done.png"), full_page=True)


@pytest.mark.browser
def test_the_schedule_knows_the_scheduler_runs_inside_the_app(browser_page, app_server, output_dir: Path) -> None:
    from evolve.scheduler import start_background

    page = browser_page
    scheduler = start_background(app_server.studio)  # as app.py does beside the web server
    try:
        open_studio(page, app_server.url)
        page.get_by_role("tab", name="Evolve").click()
        name = page.locator("#evolve-collection input")
        name.fill("daylight")
        name.press("Enter")
        page.locator("#rules-message").get_by_text("New collection daylight").wait_for(timeout=30_000)
        page.locator("#rules-editor").get_by_text("[feeds.clock]").wait_for(timeout=30_000)
        page.locator("#rules-save").click()
        page.locator("#rules-message").get_by_text("Saved").wait_for(timeout=30_000)
        row = page.locator("#schedule-table tr[data-collection='daylight']")
        row.wait_for(timeout=30_000)
        assert "python -m evolve run" not in row.inner_text()
        assert "picks up new rules within 30 s" in row.inner_text()
        page.screenshot(path=str(output_dir / "1-saved.png"), full_page=True)
        # And it does: within the scheduler's 30 s rescan the collection has a next run time.
        for _ in range(40):
            page.get_by_text("Refresh schedule").click()
            page.wait_for_timeout(2_000)
            if "being scheduled" not in row.inner_text():
                break
        assert "being scheduled" not in row.inner_text()
        assert "no scheduler" not in row.inner_text()
        page.screenshot(path=str(output_dir / "2-scheduled.png"), full_page=True)
    finally:
        scheduler.stop()


@pytest.mark.browser
def test_settings_show_optional_secrets_as_optional(browser_page, app_server, output_dir: Path) -> None:
    page = browser_page
    open_studio(page, app_server.url)
    page.get_by_role("tab", name="Settings").click()
    overview = page.locator("#settings-overview")
    overview.wait_for(timeout=30_000)
    # This studio (anvil with its key, local pinning, localhost) needs no other secret: none is red.
    assert overview.locator("[data-secret]").count() == 4
    assert overview.locator("[data-secret='missing']").count() == 0
    assert overview.locator("[data-secret='optional']").count() >= 2  # the Pinata JWT and the web login
    assert all("not set" not in text for text in overview.locator(".badge.bad").all_inner_texts())
    page.screenshot(path=str(output_dir / "1-settings.png"), full_page=True)


@pytest.fixture
def no_model_server(app_settings):
    """The app on a studio whose model is a hub id that is not cached, with the hub off (as offline)."""
    from studio.services.startup import start_studio
    from studio.services.studio import Studio
    from studio.ui.server import create_app
    from tests.fixtures.http import serve_asgi

    model = app_settings.model.model_copy(update={"model_id": "living-nft-studio-tests/not-cached-model"})
    studio = Studio.open(app_settings.model_copy(update={"model": model}))
    start_studio(studio)
    served = serve_asgi(create_app(studio))
    yield served.url
    served.stop()
    studio.close()


@pytest.mark.browser
def test_create_says_before_the_first_click_that_there_is_no_model_and_how_to_get_one(
    browser_page, no_model_server: str, output_dir: Path
) -> None:
    page = browser_page
    open_studio(page, no_model_server)
    banner = page.locator("#model-banner [data-model='missing']")
    banner.wait_for(timeout=30_000)
    text = banner.inner_text()
    assert "living-nft-studio-tests/not-cached-model" in text
    for way in ("run the studio once while online", "hf download", "STUDIO_MODEL__MODEL_ID"):
        assert way in text
    page.screenshot(path=str(output_dir / "1-banner.png"), full_page=True)

    page.locator("#prompt textarea").fill("a fox")
    page.locator("#generate").click()
    error = page.locator("#generate-error .studio-error")
    error.wait_for(timeout=30_000)
    message = error.inner_text()
    # The fix comes first; the hub's internals are not the opening words.
    assert "local_files_only" not in message.split("Get one")[0]
    assert message.index("Get one in one of three ways") < 300
    page.screenshot(path=str(output_dir / "2-generate-without-model.png"), full_page=True)
    page.get_by_role("tab", name="Settings").click()
    page.locator("#settings-overview").get_by_text("not available").wait_for(timeout=30_000)


@pytest.mark.browser
def test_creative_controls_aspect_ratios_adjusted_values_said_and_variations_with_a_new_prompt(
    browser_page, app_server, output_dir: Path
) -> None:
    page = browser_page
    open_studio(page, app_server.url)
    # An aspect ratio sets width and height (the tiny test model allows 256 pixels a side).
    page.locator("#aspect input").click()
    page.get_by_role("option", name="16:9 wide").click()
    page.wait_for_function("() => document.querySelector('#height input').value === '144'", timeout=20_000)
    assert page.locator("#width input").input_value() == "256"
    generate(page, "a wide harbour")
    assert "256 × 144" in page.locator("#draft-params").inner_text()

    # A typed value the model cannot use is changed, and the page says so and shows what was used.
    page.locator("#width input").fill("250")
    page.locator("#steps input").fill("-3")
    generate(page, "a narrow harbour")
    params = page.locator("#draft-params").inner_text()
    assert "Width 250 was changed to 248" in params
    assert "Steps -3 was changed to 1" in params
    assert page.locator("#width input").input_value() == "248"
    assert page.locator("#steps input").input_value() == "1"
    page.screenshot(path=str(output_dir / "1-adjusted.png"), full_page=True)

    # A variation takes the prompt box's new text; the box always shows the prompt of the draft shown.
    page.get_by_text("Variation of the selected draft").click()
    page.locator("#prompt textarea").fill("a narrow harbour in snow")
    page.locator("#vary").click()
    page.locator("#draft-params").get_by_text("a narrow harbour in snow").wait_for()
    assert "variation of #2" in page.locator("#draft-params").inner_text()
    page.locator("#drafts-gallery .thumbnail-item").nth(2).click()  # the oldest draft
    page.locator("#draft-params").get_by_text("a wide harbour").wait_for(timeout=20_000)
    assert page.locator("#prompt textarea").input_value() == "a wide harbour"
    page.screenshot(path=str(output_dir / "2-variation-and-sync.png"), full_page=True)


@pytest.mark.browser
def test_a_cycle_shows_feed_values_and_the_before_and_after_of_what_changed(
    browser_page, app_server, write_rules, weather_api, weather_rules_text, output_dir: Path
) -> None:
    from tests.fixtures.evolve import mint_living

    page = browser_page
    write_rules("weather", weather_rules_text)
    weather_api.value = -5.0
    [token_id] = mint_living(app_server.studio, 1)
    open_studio(page, app_server.url)
    page.get_by_role("tab", name="Evolve").click()
    page.locator("#rules-editor").get_by_text("[feeds.temperature]").wait_for(timeout=30_000)

    page.locator("#dry-run").click()
    page.locator("#cycle-changes").get_by_text("would become v1").wait_for()
    report = page.locator("#cycle-report").inner_text()
    assert "temperature: -5" in report  # the value, not "ok"
    page.locator("#dry-preview").get_by_text("preview (not sent)").wait_for(timeout=20_000)
    page.screenshot(path=str(output_dir / "1-dry-run.png"), full_page=True)

    page.locator("#run-cycle").click()
    changes = page.locator("#cycle-changes")
    changes.get_by_text("became v1").wait_for()
    assert "weather: frozen" in changes.inner_text()
    assert "a lighthouse 0, frozen" in changes.inner_text()  # the final prompt
    gallery = page.locator("#dry-preview")
    gallery.get_by_text(f"#{token_id} v1 after").wait_for(timeout=20_000)
    assert gallery.get_by_text(f"#{token_id} before").count() == 1
    assert gallery.get_by_text("preview (not sent)").count() == 0  # the stale dry run is gone
    assert app_server.studio.chain.client.metadata_version(token_id) == 1
    page.screenshot(path=str(output_dir / "2-cycle.png"), full_page=True)

    # The Collection tab says why in words, not as a JSON dump of the feed.
    page.get_by_role("tab", name="Collection").click()
    page.locator("#collection-refresh").click()
    row = page.locator("#token-timeline tr[data-version='1']")
    row.wait_for()
    assert "weather: frozen, because temperature = -5.0" in row.inner_text()
    assert '{"' not in row.inner_text()
    page.screenshot(path=str(output_dir / "3-collection-why.png"), full_page=True)


# Every change of the cycle's step list, with whether the cycle report was on the page at that moment.
WATCH_STEPS = """() => {
    window.cycleSteps = [];
    const seen = () => {
        const steps = document.querySelector('#cycle-steps');
        const text = steps ? steps.innerText : '';
        const last = window.cycleSteps[window.cycleSteps.length - 1];
        if (text && (!last || last.text !== text)) {
            window.cycleSteps.push({text, report: document.querySelector('#cycle-report') !== null});
        }
    };
    new MutationObserver(seen).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


@pytest.mark.browser
def test_a_cycle_shows_its_steps_live_before_its_report(
    browser_page, app_server, write_rules, weather_api, weather_rules_text, output_dir: Path
) -> None:
    from tests.fixtures.evolve import mint_living

    page = browser_page
    write_rules("weather", weather_rules_text)
    weather_api.value = -5.0
    [token_id] = mint_living(app_server.studio, 1)
    open_studio(page, app_server.url)
    page.get_by_role("tab", name="Evolve").click()
    page.locator("#rules-editor").get_by_text("[feeds.temperature]").wait_for(timeout=30_000)
    page.evaluate(WATCH_STEPS)

    page.locator("#run-cycle").click()
    # The watcher records every text the step list shows; a tiny-model cycle may pass "Generating 1/1" in
    # less time than a poll takes, so the test reads the record instead of waiting for that one text.
    page.locator("#cycle-changes").get_by_text("became v1").wait_for()
    page.screenshot(path=str(output_dir / "cycle-done.png"), full_page=True)

    shown = page.evaluate("() => window.cycleSteps")
    before_report = [s["text"] for s in shown if not s["report"]]
    # The feed's value and the generation were on the page while the cycle ran, before its report.
    assert any("temperature: -5.0" in t and f"Generating 1/1: token #{token_id} v1" in t for t in before_report), shown
    assert any("Tokens decided: 1 living, 1 to change" in t for t in before_report), shown
    steps = page.locator("#cycle-steps").inner_text()
    assert f"Confirmed on chain: #{token_id}" in steps
    assert "Cycle #1 done in" in steps
    assert page.locator("#cycle-steps .spinner").count() == 0  # finished: nothing still turns
    assert_no_bare_errors(page)


@pytest.mark.browser
def test_the_gallery_marks_living_tokens_with_what_they_follow_and_says_why_they_changed(
    browser_page, app_server, write_rules, weather_api, weather_rules_text, output_dir: Path
) -> None:
    from evolve.cycle import run_cycle
    from tests.fixtures.evolve import mint_living

    page = browser_page
    write_rules("weather", weather_rules_text)
    weather_api.value = -5.0
    [token_id] = mint_living(app_server.studio, 1)
    assert run_cycle(app_server.studio, "weather").evolved == [token_id]

    page.goto(f"{app_server.url}/gallery")
    card = page.locator(f"a[data-token='{token_id}']")
    card.wait_for()
    assert "living" in card.inner_text()
    page.goto(f"{app_server.url}/gallery/{token_id}")
    living = page.locator("#living")
    living.wait_for()
    assert "temperature (http_json)" in living.inner_text()
    assert "every 1h" in living.inner_text()
    why = page.locator("#version-1").inner_text()
    assert "weather: frozen, because temperature = -5.0" in why
    assert '{"' not in why  # words, not a JSON dump
    # The evolution at full size, as an animated WebP a browser plays.
    evolution = page.locator("#evolution")
    evolution.scroll_into_view_if_needed()
    page.wait_for_function("() => document.querySelector('#evolution').complete")
    assert evolution.evaluate("img => img.naturalWidth") == 64  # the drafts' own size, not a thumbnail
    page.screenshot(path=str(output_dir / "1-gallery-token.png"), full_page=True)

    import io

    import httpx
    from PIL import Image

    response = httpx.get(f"{app_server.url}/gallery/{token_id}/evolution.webp", timeout=30)
    assert response.headers["content-type"] == "image/webp"
    animation = Image.open(io.BytesIO(response.content))
    assert animation.format == "WEBP"
    assert animation.n_frames == 2
    animation.load()  # Pillow reads a frame's duration with the frame
    assert animation.info["duration"] >= 1000
