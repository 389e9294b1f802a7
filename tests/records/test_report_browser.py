"""The report in a real browser: Debian's headless chromium draws it, runs its script without a
console message, and the screenshot is not blank."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import jobspec_do, write
from tests.records.test_report import EXAMPLES, FAILING_B, Page
from tests.services import need_service

CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\] (.*)")


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        need_service("chromium is not installed (Debian: chromium; scripts/test installs it)")
    return path


Browser = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def browser(tmp_path: Path) -> Browser:
    """Run headless chromium on a page with a fresh profile; returns the finished process."""
    exe = _chromium()
    runs = iter(range(1000))

    def run(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
        profile = tmp_path / f"profile-{next(runs)}"
        argv = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                "--enable-logging=stderr", "--v=0", *args, page.as_uri()]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
    return run


def console_messages(stderr: str) -> list[str]:
    """What the page wrote to the console (its errors included), from chromium's log."""
    return [m.group(1) for m in map(CONSOLE.search, stderr.splitlines()) if m]


def test_the_console_check_sees_an_error(tmp_path: Path, browser: Browser) -> None:
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><script>nope();</script></body></html>")
    out = browser(page, "--dump-dom")
    assert any("Uncaught ReferenceError" in m for m in console_messages(out.stderr)), out.stderr


def test_the_report_draws_in_chromium(tmp_path: Path, browser: Browser) -> None:
    from PIL import Image

    text = (EXAMPLES / "fan-out-in.yaml").read_text()
    spec = write(tmp_path, text.replace('"mkdir -p $OUT && echo b > $OUT/b.txt"',
                                        f'"{FAILING_B}"'), "fan.yaml")
    assert jobspec_do("-k", spec, cwd=tmp_path).returncode == 1
    assert jobspec_do("--resume", "--report", spec, cwd=tmp_path).returncode == 1
    page = tmp_path / ".jobspec-do" / "fan" / "report.html"
    bars = len(Page(page.read_text()).having("g", "attempt"))
    assert bars == 4  # shard-b twice, shard-a and shard-c once

    dom = browser(page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr
    assert console_messages(dom.stderr) == []
    # The script ran to its end (it counts the bars last) in the DOM chromium built.
    assert f'data-bars="{bars}"' in dom.stdout.split(">", 2)[1]
    drawn = Page(dom.stdout)
    assert len(drawn.having("g", "attempt")) == bars
    assert len(drawn.having("rect", "bar")) == bars

    shot = tmp_path / "shot.png"
    out = browser(page, f"--screenshot={shot}", "--window-size=1400,900")
    assert out.returncode == 0 and shot.is_file(), out.stderr
    image = Image.open(shot).convert("RGB")
    assert image.size == (1400, 900)
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50  # text, chips and bars: not a blank page
    # The failed state's red is on screen: its chip and bars, above the fold at this size.
    red = sum(n for n, (r, g, b) in colours if r > 200 and g < 80 and b < 80)
    assert red > 200, "no failed (red) bar drawn"
