"""Playwright helpers for the Dagster UI in Debian's Chromium."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@contextmanager
def chromium_page(executable_path: str, viewport=(1600, 1000), args=(), **context):
    """A fresh page in headless Chromium, closed afterwards. `args` go to Chromium, `context` to its
    browser context (http_credentials, ignore_https_errors, ...)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable_path, args=[*CHROMIUM_ARGS, *args])
        try:
            page = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, **context).new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def dismiss_welcome(page) -> None:
    """Close the community sign-up dialog that a fresh instance shows once, if it is there."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(state="visible", timeout=4000)
    except Exception:  # noqa: BLE001 - not shown: nothing to dismiss
        return
    skip.click()


def screenshot(page, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def open_launch_dialog(page, job_url: str, partition: str):
    """Open a partitioned job, "Materialize all", pick one partition; returns the launch dialog."""
    page.goto(job_url)
    dismiss_welcome(page)
    page.get_by_text(re.compile(r"^Materialize all")).first.click()
    confirm = page.get_by_role("button", name="Confirm")
    try:
        confirm.wait_for(state="visible", timeout=3000)
        confirm.click()
    except Exception:  # noqa: BLE001 - only asked when upstream assets were never materialized
        pass
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Partition selection").wait_for()
    dialog.get_by_placeholder(re.compile("partition", re.I)).fill(partition)
    page.keyboard.press("Enter")
    return dialog
