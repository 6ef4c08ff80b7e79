"""What every browser test shares: one Debian Chromium per module (tests/support/browser.py).

Screenshots go to ``tests/browser/artifacts/`` (ignored by git) for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium (scripts/install-system-deps.sh installs it); missing is a failure."""
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: run scripts/install-system-deps.sh"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
