"""The dashboard at /admin/ (SPEC 12) in a real browser: Debian's Chromium
driven by Playwright. It loads the page, filters by virtual key and by
status, opens a row's detail, sees a new request arrive by itself, and checks
the figures against /admin/logs. Screenshots at 1280 px and at phone width
go to tests/e2e/screenshots/ when TOLLGATE_SCREENSHOTS=1."""

import json
import tempfile
import time
import urllib.request
import os
from pathlib import Path

import openai
import pytest

from conftest import KEYS, Gateway, check_hygiene, openai_compat_conf

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
# The README's screenshots are refreshed with TOLLGATE_SCREENSHOTS=1; an
# ordinary run writes its own to a temporary folder (the tree stays clean).
SHOTS = Path(__file__).resolve().parent / "screenshots" if os.environ.get("TOLLGATE_SCREENSHOTS") == "1" else Path(tempfile.mkdtemp(prefix="tollgate-shots-"))
VKS = {"team-a": "vk-dash-team-a-71c0", "team-b": "vk-dash-team-b-93f4"}
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def dgw(oa_mocks):
    with tempfile.TemporaryDirectory(prefix="tollgate-e2e-dash-") as tmp:
        extra = openai_compat_conf(oa_mocks) + "  logs: { retention_days: 7, max_rows: 100000 }\n  virtual_keys:\n" + "".join(
            f"    - {{ name: {n}, secret: env.T_DASH_{n.upper().replace('-', '_')} }}\n" for n in VKS
        )
        env = {f"T_DASH_{n.upper().replace('-', '_')}": s for n, s in VKS.items()}
        gw = Gateway(oa_mocks, tmp, extra=extra, env=env)
        yield gw
        check_hygiene(gw, {**KEYS, **VKS})


def chat(gw, vk, model="openai/gpt-4o-mini"):
    c = openai.OpenAI(base_url=f"{gw.url}/openai", api_key="dummy", max_retries=0, default_headers={"x-bf-vk": VKS[vk]})
    return c.chat.completions.create(model=model, messages=USER)


def api(gw, query=""):
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics_port}/admin/logs{query}", timeout=5) as r:
        return json.loads(r.read())


def wait_api(gw, query, n):
    deadline = time.time() + 5
    while True:
        v = api(gw, query)
        if v["stats"]["requests"] >= n or time.time() > deadline:
            assert v["stats"]["requests"] == n, v
            return v
        time.sleep(0.05)


def assert_usd(locator, x):
    """The page shows `x` dollars (to the two significant digits it shows
    for sums under a cent, else to four decimals)."""
    sync_api.expect(locator).to_have_text(__import__("re").compile(r"^\$[0-9.]+$"))
    shown = float(locator.text_content()[1:])
    assert abs(shown - x) <= max(abs(x) * 0.05, 0.00005 if x >= 0.01 else 0), (shown, x)


def test_dashboard_in_chromium(dgw):
    gw = dgw
    for _ in range(4):
        chat(gw, "team-a")
    with pytest.raises(openai.InternalServerError):
        chat(gw, "team-a", "openai/gpt-fail-500")
    for _ in range(3):
        chat(gw, "team-b")
    a = wait_api(gw, "?virtual_key=team-a", 5)
    wait_api(gw, "?virtual_key=team-b", 3)
    assert a["stats"]["errors"] == 1

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="Asia/Tokyo", locale="en-US")
        page = ctx.new_page()
        # Nothing may come from another host.
        foreign = []
        page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith(f"http://127.0.0.1:{gw.metrics_port}/") else None)
        page.goto(f"http://127.0.0.1:{gw.metrics_port}/admin/")
        rows = page.locator("#rows tbody tr")
        sync_api.expect(rows.first).to_be_visible()
        everything = api(gw, "?limit=50")
        sync_api.expect(page.locator("#stat-requests")).to_have_text(str(everything["stats"]["requests"]))
        # The charts: one line (or point) per virtual key, and the legend.
        sync_api.expect(page.locator("#legend li", has_text="team-a")).to_have_count(1)
        sync_api.expect(page.locator("#legend li", has_text="team-b")).to_have_count(1)
        assert page.locator("#chart-requests svg polyline, #chart-requests svg circle").count() >= 2
        page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)

        # Filter by virtual key: the table and the figures are team-a's.
        page.fill("#f-virtual_key", "team-a")
        page.click("#apply")
        sync_api.expect(rows).to_have_count(5)
        sync_api.expect(page.locator("#stat-requests")).to_have_text("5")
        sync_api.expect(page.locator("#stat-errors")).to_have_text("1 (20.0%)")
        assert_usd(page.locator("#stat-cost"), a["stats"]["cost_usd"])
        sync_api.expect(page.locator("#stat-tokens")).to_have_text(str(a["stats"]["tokens"]))
        ids = [r.get_attribute("data-id") for r in rows.all()]
        assert ids == [r["request_id"] for r in a["logs"]], "the same rows, newest first"

        # And by status.
        page.select_option("#f-status", "5xx")
        page.click("#apply")
        sync_api.expect(rows).to_have_count(1)
        failed = api(gw, "?virtual_key=team-a&status=5xx")["logs"][0]
        assert rows.first.get_attribute("data-id") == failed["request_id"]
        sync_api.expect(rows.first.locator("td").nth(1)).to_have_text("500")

        # A row's detail, from the keyboard.
        rows.first.focus()
        page.keyboard.press("Enter")
        dialog = page.locator("#detail")
        sync_api.expect(dialog).to_be_visible()
        field = lambda k: dialog.locator(f'dd[data-field="{k}"]')
        sync_api.expect(field("Request id")).to_have_text(failed["request_id"])
        sync_api.expect(field("Status")).to_contain_text("500")
        sync_api.expect(field("Virtual key")).to_have_text("team-a")
        sync_api.expect(field("Time")).to_contain_text("Asia/Tokyo")
        page.keyboard.press("Escape")
        sync_api.expect(dialog).to_be_hidden()

        # A successful row's usage and cost.
        page.select_option("#f-status", "2xx")
        page.click("#apply")
        sync_api.expect(rows).to_have_count(4)
        ok = api(gw, "?virtual_key=team-a&status=2xx")["logs"][0]
        rows.first.click()
        sync_api.expect(field("Usage")).to_contain_text(f"input {ok['input_tokens']}")
        sync_api.expect(field("Usage")).to_contain_text(f"output {ok['output_tokens']}")
        assert_usd(field("Cost"), ok["cost_usd"])
        sync_api.expect(field("Attempts")).not_to_be_empty()
        page.click("#close")

        # Live: a new request shows up without touching the page.
        chat(gw, "team-a")
        sync_api.expect(rows).to_have_count(5, timeout=8000)
        sync_api.expect(page.locator("#stat-requests")).to_have_text("5")

        # Phone width: no sideways scrolling of the page itself.
        page.click("#reset")
        page.set_viewport_size({"width": 390, "height": 844})
        sync_api.expect(rows).to_have_count(api(gw, "?limit=50")["stats"]["requests"])
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(SHOTS / "dashboard-phone.png"), full_page=False)
        assert not foreign, foreign
        browser.close()
