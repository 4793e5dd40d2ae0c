"""End to end in headless Chromium: generate a draft, mint it as a living token with a rules file, run
an evolution cycle, see the new version in the token's timeline and in the collector gallery. No
request may leave 127.0.0.1. Screenshots go to test-output/<test name>/."""

from __future__ import annotations

import pytest

LONG_MS = 180_000


@pytest.mark.browser
def test_generate_mint_evolve_and_see_it_in_the_gallery(
    browser_page, app_server, write_rules, weather_api, weather_rules_text, output_dir
) -> None:
    page = browser_page
    write_rules("weather", weather_rules_text)
    weather_api.value = -5.0

    page.goto(app_server.url + "/")
    page.locator("#prompt textarea").fill("a lighthouse on a cliff")
    page.locator("#generate").click()
    page.locator("#draft-params").get_by_text("a lighthouse on a cliff").wait_for()
    page.screenshot(path=str(output_dir / "1-create.png"), full_page=True)

    page.get_by_role("tab", name="Mint").click()
    page.locator("#mint-name input, #mint-name textarea").first.fill("Lighthouse")
    page.locator("#mint-living input[type=checkbox]").check()
    page.locator("#mint-button").click()
    page.locator("#mint-result").get_by_text("Minted").wait_for()
    assert page.locator("#mint-steps li[data-step='confirmation']").count() == 1
    page.screenshot(path=str(output_dir / "2-mint.png"), full_page=True)

    from studio.services.tokens import list_tokens

    tokens = list_tokens(app_server.studio)
    assert len(tokens) == 1
    token_id = tokens[0].token_id
    assert tokens[0].living
    assert tokens[0].rules_name == "weather"

    page.get_by_role("tab", name="Evolve").click()
    page.locator("#run-cycle").click()
    page.locator("#cycle-report").get_by_text(f"#{token_id}").first.wait_for()
    page.screenshot(path=str(output_dir / "3-evolve.png"), full_page=True)
    assert app_server.studio.chain.client.metadata_version(token_id) == 1

    page.get_by_role("tab", name="Collection").click()
    page.locator("#collection-refresh").click()
    page.locator("#token-timeline tr[data-version='1']").wait_for()
    assert "frozen" in page.locator("#token-timeline").inner_text()  # the weather trait that caused v1
    page.screenshot(path=str(output_dir / "4-collection.png"), full_page=True)

    page.goto(f"{app_server.url}/gallery/{token_id}")
    page.locator("#version-1").wait_for()
    assert page.locator("#version-0").count() == 1
    assert "Lighthouse" in page.locator("#token-name").inner_text()
    image = page.locator(".hero img")
    assert image.evaluate("img => img.complete && img.naturalWidth > 0")
    page.screenshot(path=str(output_dir / "5-gallery-token.png"), full_page=True)
    page.goto(f"{app_server.url}/gallery")
    page.locator(f"a[data-token='{token_id}']").wait_for()
    page.screenshot(path=str(output_dir / "6-gallery.png"), full_page=True)

    assert page.outside_requests == []  # type: ignore[attr-defined]
