"""The live dashboard in a real browser (Debian's headless chromium, driven by Playwright)
against real servers: it loads cleanly, shows a published version SERVING within 2 s, follows a
canary step by step with the measured split, acts with an ``operate`` token and shows why it
cannot without one, and reconnects by itself when the server restarts. The canary test also
takes a screenshot at 50 %: into the test's own directory, or, with ``BATON_SCREENSHOT=PATH``
(``make screenshot``), to PATH — how the README's ``docs/dashboard.png`` is made.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from baton.dev.demo import affine_model, write_version

from .conftest import baton_cli, wait_for
from .traffic import Traffic

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="baton-chromium-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )  # fmt: skip
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser):
    page = browser.new_page()
    page.errors = []  # console errors and uncaught exceptions, checked by the tests
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    yield page
    page.close()


def row(page: Page, model: str, version: int):
    return page.locator(f'article[data-model="{model}"] tr[data-version="{version}"]')


def test_the_page_loads_cleanly_and_shows_a_new_version_serving_within_2_s(
    server_factory, repo, page
):
    server = server_factory(repo)
    page.goto(f"{server.url}/dashboard")
    expect(page.locator("#connection")).to_have_text("live")
    expect(row(page, "m", 2).locator(".state")).to_have_text("SERVING")
    write_version(repo / "m", 3, affine_model(3.0))
    published = time.monotonic()
    expect(row(page, "m", 3).locator(".state")).to_have_text("SERVING", timeout=2000)
    assert time.monotonic() - published < 2.0
    expect(row(page, "m", 2).locator(".state")).to_have_text("UNLOADED")
    assert page.errors == []
    # phone width: nothing wider than the screen but the tables' own scrolling boxes
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    expect(row(page, "m", 3)).to_be_visible()


def test_a_canary_share_moves_step_by_step_with_the_measured_split(server_factory, tmp_path, page):
    root = tmp_path / "repo"
    write_version(root / "m", 1, affine_model(1.0))
    (root / "m" / "model.yaml").write_text(
        "rollout: {mode: canary, steps: [20, 50, 80, 100], interval: 6s,\n"
        "          gates: {min_requests: 30, max_p99_ratio: 50}}\n"
    )
    server = server_factory(root, env={"BATON_ROLLOUT_PERIOD": "0.2"})
    page.goto(f"{server.url}/dashboard")
    expect(page.locator("#connection")).to_have_text("live")
    with Traffic(server.url) as traffic:
        time.sleep(1.0)
        write_version(root / "m", 2, affine_model(1.0))
        seen = []
        for weight in (0.2, 0.5, 0.8):
            weight_text = f"{weight * 100:.0f} %"
            expect(page.locator(".weight")).to_have_text(weight_text, timeout=15000)
            time.sleep(4.5)  # the page measures the share over its last 3 s (ticks: 1 s)
            shown = row(page, "m", 2).locator(".share").inner_text()
            now = time.time()
            window = [v for t, _, v in traffic.log if now - 3 < t <= now]
            measured = window.count("2") / len(window)  # sticky sessions included
            seen.append(float(shown.rstrip(" %")) / 100)
            assert abs(seen[-1] - measured) < 0.05, (weight, shown, measured, len(window))
            if weight == 0.5:
                shot = Path(os.environ.get("BATON_SCREENSHOT") or tmp_path / "dashboard.png")
                shot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shot), full_page=True)
                assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert seen == sorted(seen) and seen[-1] - seen[0] > 0.3, seen  # it moved, step by step
    assert page.errors == []


def test_a_rollback_needs_an_operate_token_and_says_so_without_one(
    server_factory, repo, page, tmp_path
):
    tokens, made = tmp_path / "tokens.yaml", {}
    for name, scope in (("ops", "operate"), ("reader", "read")):
        out = baton_cli("token", "new", name, "--scope", scope, "--tokens", str(tokens))
        made[name] = out.stdout.strip()
    server = server_factory(repo, args=("--tokens", str(tokens)))
    admin = {"authorization": f"Bearer {made['ops']}"}
    page.goto(f"{server.url}/dashboard")
    expect(page.locator("#notice")).to_contain_text("needs a token")

    def use(token: str) -> None:
        page.fill("#token", token)
        page.click("#token-form button")

    use(made["reader"])  # enough to watch, not to act
    expect(row(page, "m", 2).locator(".state")).to_have_text("SERVING")
    page.locator('article[data-model="m"] .controls button', has_text="rollback").click()
    expect(page.locator("#notice")).to_contain_text("refused (403)")
    expect(page.locator("#notice")).to_contain_text("lacks the 'operate' scope")
    model = httpx.get(f"{server.url}/admin/models/m", headers=admin).json()
    assert model["default_version"] == 2

    use(made["ops"])
    expect(page.locator("#connection")).to_have_text("live")
    page.locator('article[data-model="m"] .controls button', has_text="rollback").click()
    expect(page.locator("#notice")).to_contain_text("rolled back")
    model = httpx.get(f"{server.url}/admin/models/m", headers=admin).json()
    assert model["default_version"] == 1 and model["pinned"] == 1
    expect(page.locator('article[data-model="m"] h2')).to_contain_text("serving v1")
    assert [e for e in page.errors if "401" not in e and "403" not in e] == []


def test_the_page_reconnects_by_itself_when_the_server_restarts(server_factory, repo, page):
    server = server_factory(repo)
    page.goto(f"{server.url}/dashboard")
    expect(row(page, "m", 2).locator(".state")).to_have_text("SERVING")
    assert server.stop() == 0
    expect(page.locator("#connection")).to_have_text("reconnecting…")
    write_version(repo / "m", 3, affine_model(3.0))  # what the new server will serve
    server_factory(repo, port=server.port)
    expect(page.locator("#connection")).to_have_text("live", timeout=15000)
    expect(row(page, "m", 3).locator(".state")).to_have_text("SERVING", timeout=15000)
    wait_for(lambda: page.locator("#events li").count() > 0, timeout=10)
