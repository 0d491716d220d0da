"""Fixtures for the chat page tests: Chromium (installed when missing), the page, a balancer.

Screenshots go to `artifacts/web/<test>/` (gitignored); their paths are listed at the end of
the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import start_replicas  # noqa: F401  (the real replicas, reused)
from tests.redis_cluster import free_port
from tests.web.page import CHROMEDRIVER, CHROMIUM, ChatPage, start_chrome

ARTIFACTS = ROOT / "artifacts" / "web"
_SCREENSHOTS: list[Path] = []


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium and chromium-driver, installed with apt by the project's script when
    missing. Fails (never skips) when they cannot be installed."""
    script = ROOT / "scripts" / "install_chromium.sh"
    result = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, timeout=900, check=False
    )
    if result.returncode != 0 or not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(
            f"the browser tests need {CHROMIUM} and {CHROMEDRIVER}; {script.name} could not "
            f"install them:\n{result.stderr.strip()}",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture
def page(
    chromium: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[ChatPage]:
    """A fresh headless Chromium (own profile) at phone size; quits after the test."""
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not try to download
    shots = ARTIFACTS / request.node.name
    shutil.rmtree(shots, ignore_errors=True)
    driver = start_chrome(tmp_path / "profile")
    chat = ChatPage(driver, shots)
    try:
        yield chat
    finally:
        _SCREENSHOTS.extend(chat.saved)
        driver.quit()


class BalancerProcess:
    def __init__(self, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.port = port
        self.proc = proc
        self.log = log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[dict[str, object]]:
        return httpx.get(f"{self.url}/__balancer/requests", timeout=5).json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.unlink(missing_ok=True)


StartBalancer = Callable[..., BalancerProcess]


@pytest.fixture
def start_balancer() -> Iterator[StartBalancer]:
    """Start tests/web/balancer.py on a free loopback port; stopped after the test."""
    started: list[BalancerProcess] = []

    def start(streams: list[str], others: list[str], lose_answers: int = 0) -> BalancerProcess:
        port = free_port()
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"triage-balancer-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.web.balancer",
                    "--port",
                    str(port),
                    "--streams",
                    ",".join(streams),
                    "--others",
                    ",".join(others),
                    "--lose-answers",
                    str(lose_answers),
                ],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        balancer = BalancerProcess(port, proc, log)
        started.append(balancer)
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"balancer exited: {log.read_text(errors='replace')}")
            try:
                balancer.requests()
                return balancer
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("balancer did not start") from None
                time.sleep(0.05)

    try:
        yield start
    finally:
        for balancer in started:
            balancer.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SCREENSHOTS:
        terminalreporter.section("chat page screenshots")
        for path in _SCREENSHOTS:
            terminalreporter.write_line(str(path.relative_to(ROOT)))
