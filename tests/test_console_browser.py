"""The console in a real browser: Debian's chromium, headless, driven by selenium through
Debian's chromedriver. Log in with the admin key, stream a playground prompt from the mock and
watch the text grow, see requests arrive in Live over the feed, a key's use, and a provider's
key and target resting (a fake upstream answers 401 and 503).

The browser must be there: without it this test fails, saying what to install (`.ci/run`
installs chromium and chromium-driver when missing). Screenshots of each view are written to
$CONSOLE_SCREENSHOTS when set (the README's come from `CONSOLE_SCREENSHOTS=docs`), else to
the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.streams import openai_chat_stream, streaming

ADMIN = "sk-admin-console"
TEAM = "sk-team-console"
BATCH = "sk-batch-console"
# Flags that work in this sandbox and CI: no GPU, no sandbox (root), no network of its own.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,900",
)
HOSTILE_MODEL = "mock/<img src=x onerror=\"document.title='pwned'\">"


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    missing = [path for path in (chromium, driver) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(
            f"the console's browser test needs {', '.join(missing)}: "
            "apt-get install chromium chromium-driver (.ci/run installs them when missing)",
            pytrace=False,
        )
    return chromium, driver


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    chromium, driver_path = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tmp_path / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


class Console:
    """The page, as a person uses it (every call blocks: run from a thread, not the loop
    that serves the gateway)."""

    def __init__(self, driver: WebDriver, url: str) -> None:
        self.driver = driver
        self.url = url

    def wait(self, condition: Any, what: str, timeout: float = 10.0) -> Any:
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.02).until(condition)
        except TimeoutException:
            shown = [row[:7] for row in self.rows("live-rows")]
            raise AssertionError(f"the page never showed {what} (Live: {shown})") from None

    def text(self, id: str) -> str:
        return str(self.driver.find_element(By.ID, id).text)

    def fill(self, id: str, value: str) -> None:
        field = self.driver.find_element(By.ID, id)
        field.clear()
        field.send_keys(value)

    def view(self, name: str) -> None:
        self.driver.find_element(By.CSS_SELECTOR, f'nav a[data-view="{name}"]').click()
        self.wait(lambda d: d.find_element(By.ID, name).is_displayed(), f"the {name} view")

    def rows(self, body: str) -> list[list[str]]:
        """The cells' text of each row of a table body (one call to the browser)."""
        script = "return [...arguments[0].rows].map(r => [...r.cells].map(c => c.innerText))"
        rows: list[list[str]] = self.driver.execute_script(
            script, self.driver.find_element(By.ID, body)
        )
        return rows

    def live_models(self) -> list[str]:
        return [row[3] for row in self.rows("live-rows")]


def admin_get(url: str, path: str) -> Any:
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return orjson.loads(response.read())


def chat(url: str, model: str, key: str, stream: bool = True) -> None:
    with openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0) as client:
        messages = [{"role": "user", "content": "hi"}]
        if stream:
            for _ in client.chat.completions.create(model=model, messages=messages, stream=True):
                pass
        else:
            client.chat.completions.create(model=model, messages=messages)


def money(usd: float) -> str:
    """As the page shows an amount (console.js's `money`)."""
    return f"${usd:.6f}" if usd < 0.01 else f"${usd:.4f}"


def fails(url: str, model: str, key: str) -> None:
    with pytest.raises(openai.APIStatusError):
        chat(url, model, key, stream=False)


async def test_the_console_in_a_browser(
    upstream: FakeUpstream,
    start_gateway: GatewayFactory,
    browser: WebDriver,
    screenshots: Path,
) -> None:
    async def upstream_answer(request: web.Request) -> web.StreamResponse:
        model = (await request.json())["model"]
        if model == "refusing":  # the provider refuses the key: the key rests
            return web.json_response({"error": {"message": "invalid key"}}, status=401)
        if model == "down":  # the target is down: with failures_to_rest = 1, it rests
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        return await streaming(openai_chat_stream(["Fine", " thanks"]), delay=0.01)(request)

    upstream.handler = upstream_answer
    url = await start_gateway(
        provider_toml(upstream.url, "flaky", api_key="sk-upstream")
        + "[providers.mock]\ndelay = 0.04\ntokens = 30\n"
        + '[models.smart]\ntargets = ["flaky/down", "mock/smart-fallback"]\n'
        + "[routing]\nfailures_to_rest = 1\ncooldown = 600\n"
        + f'[keys.team]\nvalue = "{TEAM}"\nrpm = 100\ntpm = 20000\nbudget = 50000\n'
        + "max_parallel = 4\nmax_spend = 5\n"
        # USD per million: the mock priced, and smart's first target (the key has a max_spend)
        + '[prices.mock]\ninput = 2.5\noutput = 10\n[prices."flaky/down"]\ninput = 1\noutput = 2\n'
        + f'[keys.batch]\nvalue = "{BATCH}"\nmodels = ["flaky/*", "smart"]\nbudget = 2000\n'
        + f'[admin]\nkey = "{ADMIN}"\n'
    )
    await asyncio.to_thread(_browse, Console(browser, url), screenshots)


def _browse(page: Console, screenshots: Path) -> None:
    url, driver = page.url, page.driver
    # Some traffic first: a refused key and a failing target (both rest), a fallback.
    fails(url, "flaky/refusing", BATCH)
    fails(url, "flaky/down", BATCH)
    chat(url, "smart", BATCH, stream=False)
    chat(url, "flaky/fine", BATCH)

    # Log in: the key is typed once, kept in the tab's session storage, never in the URL.
    driver.get(f"{url}/console")
    page.wait(lambda d: d.find_element(By.ID, "admin-key").is_displayed(), "the login form")
    page.fill("admin-key", "not-the-admin-key")
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
    page.wait(lambda d: "refused" in page.text("login-error"), "the refusal of a wrong key")
    page.fill("admin-key", ADMIN)
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
    page.wait(lambda d: d.find_element(By.ID, "tabs").is_displayed(), "the views")
    assert driver.execute_script("return sessionStorage.length") == 1
    assert ADMIN not in driver.current_url
    page.wait(lambda d: page.text("feed-state") == "live", "the feed connected")
    page.wait(lambda d: len(page.rows("live-rows")) == 4, "the ring's four requests")

    # Playground: the gateway key typed in the page, the mock's answer streamed.
    page.view("playground")
    page.fill("play-key", TEAM)
    driver.find_element(By.ID, "play-load").click()
    options = "return [...document.querySelectorAll('#play-models option')].map(o => o.value)"
    page.wait(
        lambda d: d.execute_script(options) == ["smart", "mock/mock-model"],
        "the models from /v1/models",
    )
    page.fill("play-model", "mock/playground")
    page.fill("play-prompt", "Tell me about the gateway.")
    driver.find_element(By.ID, "play-send").click()
    seen = [page.text("play-output")]
    deadline = time.monotonic() + 30
    while not driver.find_element(By.ID, "play-send").is_enabled() or not seen[-1]:
        assert time.monotonic() < deadline, f"the answer never ended: {seen}"
        text = page.text("play-output")
        if text != seen[-1]:
            seen.append(text)
    final = page.text("play-output")
    grew = [text for text in seen if text]
    assert len(grew) >= 3, grew  # it grew token by token, not all at once
    assert all(final.startswith(text) for text in grew)
    assert len(final.split()) == 30 and page.text("play-status") == "200"
    assert page.text("play-served") == "mock/playground"
    assert page.text("play-ttft").endswith(" ms")
    assert float(page.text("play-rate").replace(",", "")) > 0
    assert page.text("play-tokens").endswith("/ 30 out")
    driver.save_screenshot(str(screenshots / "console-playground.png"))

    # Live: the playground's request is there; one sent from elsewhere arrives by the feed.
    page.view("live")
    page.wait(lambda d: "mock/playground" in page.live_models(), "the playground request")
    sent = time.monotonic()
    chat(url, "mock/from-elsewhere", TEAM)
    finished = time.monotonic()
    page.wait(lambda d: page.live_models()[0] == "mock/from-elsewhere", "the new request")
    arrived = time.monotonic()
    print(
        f"feed: the row showed {1000 * (arrived - finished):.0f} ms after the request ended "
        f"({1000 * (finished - sent):.0f} ms to run it)"
    )
    # Client-chosen words are shown as words: no element is made of them, nothing runs.
    chat(url, HOSTILE_MODEL, TEAM, stream=False)  # the mock answers any name
    page.wait(lambda d: page.live_models()[0] == HOSTILE_MODEL, "the hostile model's row")
    assert driver.find_elements(By.CSS_SELECTOR, "#live-rows img") == []
    assert driver.title == "Gateway console"
    # The filters.
    page.fill("filter-model", "elsewhere")
    page.wait(lambda d: page.live_models() == ["mock/from-elsewhere"], "the model filter")
    page.fill("filter-model", "")
    Select(driver.find_element(By.ID, "filter-status")).select_by_value("error")
    page.wait(
        lambda d: page.live_models() == ["flaky/down", "flaky/refusing"],
        "the status filter",
    )
    Select(driver.find_element(By.ID, "filter-status")).select_by_value("")
    chat(url, "smart", TEAM, stream=False)
    chat(url, "flaky/fine", BATCH)
    page.wait(lambda d: len(page.rows("live-rows")) == 9, "every request")
    # Each request's cost, as its record has it: the priced mock's, a dash where unknown.
    costs = {row[3]: row[10] for row in page.rows("live-rows")}
    entries = {e["model"]: e for e in admin_get(url, "/console/api/requests")["data"]}
    assert costs["mock/from-elsewhere"] == money(entries["mock/from-elsewhere"]["cost_usd"])
    assert entries["mock/from-elsewhere"]["cost_usd"] > 0
    assert costs["flaky/fine"] == "—"  # a model no table knows: unknown, never $0
    driver.save_screenshot(str(screenshots / "console-live.png"))

    # Keys: each key's use against its limits, as the usage route reports it.
    page.view("keys")
    usage = {key["key"]: key for key in admin_get(url, "/v1/keys/usage")["data"]}
    page.wait(lambda d: len(page.rows("keys-rows")) == 2, "the two keys")
    rows = {row[0]: row for row in page.rows("keys-rows")}
    team = rows["team"]
    assert team[2] == f"{usage['team']['requests_last_minute']} / 100"
    assert team[5].startswith(f"{usage['team']['budget_spent']:,} / 50,000")
    assert team[4] == "0 / 4"
    assert team[6].startswith("1d, resets in ")
    # Its spend this period against its max_spend (the usage route's figures).
    assert usage["team"]["spend_usd"] > 0 and usage["team"]["max_spend_usd"] == 5
    assert team[7] == f"{money(usage['team']['spend_usd'])} / $5.0000"
    assert rows["batch"][7] == f"{money(usage['batch']['spend_usd'])} / —"  # no max_spend
    driver.save_screenshot(str(screenshots / "console-keys.png"))

    # Providers: the key the upstream refused and the target that failed rest, and why.
    page.view("providers")
    page.wait(lambda d: len(page.rows("resting-rows")) >= 2, "the resting key and target")
    resting = {row[0]: row for row in page.rows("resting-rows")}
    assert resting["flaky#0"][1:3] == ["key", "flaky"]
    assert "refused the key (401)" in resting["flaky#0"][5]
    assert resting["flaky/down"][1] == "target"
    assert resting["flaky/down"][5].startswith("answered 503, last at ")
    providers = {row[0]: row for row in page.rows("providers-rows")}
    assert providers["flaky"][1] == "openai" and providers["flaky"][5].endswith("%")
    driver.save_screenshot(str(screenshots / "console-providers.png"))

    # Nothing the page did broke its Content-Security-Policy.
    refused = [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"] or "Refused to" in entry["message"]
    ]
    assert refused == []

    # Logging out forgets the key.
    driver.find_element(By.ID, "logout").click()
    page.wait(lambda d: d.find_element(By.ID, "login").is_displayed(), "the login form again")
    assert driver.execute_script("return sessionStorage.length") == 0
    assert page.rows("live-rows") == []
