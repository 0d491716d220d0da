"""Driving the chat page in headless Chromium (Debian's chromium + chromedriver, via Selenium).

Nothing is downloaded: the browser and its driver come from apt (scripts/install_chromium.sh),
Selenium is pointed at /usr/bin/chromedriver and kept offline (SE_OFFLINE=true), so Selenium
Manager never tries to fetch a browser. The window is a phone's (390 x 844 CSS pixels).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.sse_helpers import GUARD

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PHONE = {"width": 390, "height": 844, "pixelRatio": 2}
# The flags that work in this sandbox: no GPU, no QUIC, nothing phoning home.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--lang=pt-BR",
)

T = TypeVar("T")


def start_chrome(profile_dir: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.add_argument(f"--window-size={PHONE['width']},{PHONE['height']}")
    options.add_experimental_option("mobileEmulation", {"deviceMetrics": PHONE})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


class ChatPage:
    """The chat page as a person uses it: sign in, send, read; plus waits and screenshots."""

    def __init__(self, driver: webdriver.Chrome, shots: Path) -> None:
        self.driver = driver
        self.shots = shots
        self.saved: list[Path] = []

    # -------------------------------------------------------------------- actions

    def open(self, url: str) -> None:
        self.driver.get(url)
        self.wait(lambda: self.visible("login") or self.visible("app"), "the page to load")

    def dev_sign_in(self, user: str) -> None:
        field = self.find("#dev-user")
        field.clear()
        field.send_keys(user)
        self.find("#dev-login button[type=submit]").click()
        self.wait(lambda: self.visible("app"), "the chat to show after signing in")

    def send(self, text: str) -> None:
        self.wait(lambda: self.find("#send").is_enabled(), "the send button to be enabled")
        box = self.find("#message-input")
        box.send_keys(text)
        self.find("#send").click()

    def open_menu(self) -> None:
        """Slide the conversation list in (phone width) and wait until it is in place."""
        if self.find("#menu-button").get_attribute("aria-expanded") != "true":
            self.find("#menu-button").click()
        self.wait(
            lambda: self.driver.execute_script(
                "return document.getElementById('sidebar').getBoundingClientRect().left >= 0"
            ),
            "the conversation list to slide in",
        )

    def set_offline(self, offline: bool) -> None:
        """Cut (or restore) the page's network, as a phone losing signal."""
        self.driver.execute_cdp_cmd("Network.enable", {})
        self.driver.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )

    # ------------------------------------------------------------------- reading

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def visible(self, element_id: str) -> bool:
        script = f"return !document.getElementById('{element_id}').hidden"
        return bool(self.driver.execute_script(script))

    def connection(self) -> str:
        return str(self.find("#connection").get_attribute("data-state"))

    def connection_status(self) -> tuple[str, str]:
        """(state, the text shown), read together."""
        state, text = self.driver.execute_script(
            "return [document.getElementById('connection').dataset.state,"
            " document.getElementById('connection-text').textContent]"
        )
        return str(state), str(text)

    def connection_text(self) -> str:
        return self.find("#connection-text").text

    def replies(self) -> list[WebElement]:
        return self.find_all("#messages .bubble.assistant")

    def bubble_texts(self, role: str) -> list[str]:
        return [e.text for e in self.find_all(f"#messages .bubble.{role} .text")]

    def streaming_text(self) -> str | None:
        """The text of the reply being written, or None when no reply is streaming."""
        value = self.driver.execute_script(
            "const el = document.querySelector('#messages .bubble.streaming .text');"
            "return el ? el.textContent : null;"
        )
        return None if value is None else str(value)

    def words_streamed(self) -> int:
        return len((self.streaming_text() or "").split())

    def triage_card(self) -> dict[str, Any] | None:
        cards = self.find_all("#messages .triage-card")
        if not cards:
            return None
        card = cards[0]

        def field(name: str) -> str:
            return card.find_element(By.CSS_SELECTOR, f'[data-field="{name}"]').text

        missing = '[data-field="missing_information"] li'
        return {
            "area": field("area"),
            "urgency": field("urgency"),
            "urgency_reason": field("urgency_reason"),
            "next_step": field("recommended_next_step"),
            "missing": [li.text for li in card.find_elements(By.CSS_SELECTOR, missing)],
        }

    def console(self) -> list[str]:
        return [f"{e['level']} {e['message']}" for e in self.driver.get_log("browser")]

    # ----------------------------------------------------------------- waiting

    def wait(self, condition: Callable[[], T], what: str, timeout: float = GUARD) -> T:
        """Poll `condition` until it is truthy (a hang guard, not a timing assertion)."""

        def check(_driver: Any) -> T:
            try:
                return condition()
            except StaleElementReferenceException:
                return False  # type: ignore[return-value]

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.03).until(check)
        except TimeoutException:
            raise AssertionError(
                f"gave up waiting for {what} after {timeout:.0f} s; console:\n"
                + "\n".join(self.console()[-20:])
            ) from None

    def watch_reply(self) -> list[str]:
        """Sample the streaming reply until it completes; the distinct texts seen, in order."""
        seen: list[str] = []
        deadline = time.monotonic() + GUARD
        while True:
            text = self.streaming_text()
            if text is None and seen:
                return seen
            if text and (not seen or text != seen[-1]):
                seen.append(text)
            assert time.monotonic() < deadline, f"the reply never completed; saw {seen[-1:]}"
            time.sleep(0.02)

    # -------------------------------------------------------------- screenshots

    def screenshot(self, name: str) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{len(self.saved) + 1:02d}-{re.sub(r'[^a-z0-9-]+', '-', name)}.png"
        self.driver.save_screenshot(str(path))
        self.saved.append(path)
        return path
