"""Debian's Chromium for the browser tests: where it is, how it starts, where screenshots go.

Playwright never downloads a browser here: it starts ``/usr/bin/chromium`` (installed by
scripts/install-system-deps.sh) headless, without the sandbox (root in a container) and with its
background networking off, so it only ever talks to the loopback pages a test opens.
"""

from __future__ import annotations

from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "browser" / "artifacts"
