"""Headless Chromium, to check that a report loads cleanly and to take screenshots of it.

Chromium runs offline with a throw-away profile; as root it needs ``--no-sandbox``. Console
messages come back from ``--enable-logging=stderr`` as ``CONSOLE`` lines.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from wmprobe.errors import BrowserUnavailableError

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)


@dataclass
class PageLoad:
    """What Chromium saw: the DOM after load and the page's console messages."""

    dom: str
    console: list[str]


def chromium_path() -> Path:
    """The Chromium executable; missing is an error that says how to install it."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise BrowserUnavailableError(
        "Headless Chromium is not installed; on Debian: `apt-get install -y chromium`."
    )


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="wmprobe-chromium-") as profile:
        cmd = [str(chromium_path()), *FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def load_page(html: str | Path, timeout: float = 60.0) -> PageLoad:
    """Open ``html`` in headless Chromium; the DOM after the load event, and console lines."""
    url = Path(html).resolve().as_uri()
    done = _run(["--virtual-time-budget=5000", "--dump-dom", url], timeout)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    if done.returncode != 0:
        raise BrowserUnavailableError(
            f"Chromium failed on {url} (exit {done.returncode}): {done.stderr[-500:]}"
        )
    return PageLoad(dom=done.stdout, console=console)


def screenshot(
    html: str | Path, png: str | Path, width: int = 1280, height: int = 3000, timeout: float = 60.0
) -> Path:
    """Save a ``width`` x ``height`` screenshot of the top of ``html`` to ``png``."""
    out = Path(png).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    url = Path(html).resolve().as_uri()
    done = _run([f"--screenshot={out}", f"--window-size={width},{height}", url], timeout)
    if done.returncode != 0 or not out.is_file():
        raise BrowserUnavailableError(
            f"Chromium could not screenshot {url} (exit {done.returncode}): {done.stderr[-500:]}"
        )
    return out
