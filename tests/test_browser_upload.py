"""The owner's batch upload on the project page, driven in headless Chromium on a phone-sized screen.

Same browser and phone settings as tests/test_browser.py (the system Chromium, never a downloaded
one). Playwright's sync API allows one instance per thread and tests/test_browser.py keeps its
own open on the main thread for the whole session, so this test drives its Chromium from a thread
of its own; the main thread runs the worker once the upload is in.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PHONE,
    TAGGING,
    TIMEOUT_MS,
    collect_problems,
    make_zip,
    png_bytes,
    shoot,
    sign_in_with_key,
)
from tests.test_importing import photo

pytestmark = pytest.mark.browser


def upload_on_the_page(server: str, key: str, project_name: str, archive: Path,
                       uploaded: threading.Event) -> dict[str, Any]:
    """Sign in, upload ``archive`` on the project page, wait for the report; what the page showed, and any errors."""
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = chromium.new_context(**PHONE)
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            collect_problems(page, problems)
            page.goto(server + "/owner/login")
            sign_in_with_key(page, key)
            page.get_by_role("link", name=project_name).tap()
            page.get_by_role("heading", name="Add units").wait_for()
            page.get_by_label("ZIP archive or large image").set_input_files(str(archive))
            page.get_by_role("button", name="Upload").tap()
            page.get_by_role("status").filter(has_text="waiting for a worker").wait_for()
            uploaded.set()  # the main thread now runs the worker; the page goes on polling
            page.get_by_text("units imported").wait_for()
            page.locator("#upload").scroll_into_view_if_needed()
            shoot(page, "owner-upload-done")
            return {
                "status": page.get_by_role("status").inner_text(),
                "summary": page.locator("#upload-summary").inner_text(),
                "bar": page.evaluate("(bar => [bar.value, bar.max])(document.getElementById('upload-progress'))"),
                "rejected": page.get_by_role("list", name="Files not imported").inner_text(),
                "problems": problems,
            }
        finally:
            chromium.close()


def test_an_owner_uploads_a_zip_and_follows_it_to_done(server, client, owner, run_jobs, tmp_path: Path):
    """The owner picks a ZIP on the project page; the progress bar reaches the end and the report lists rejects."""
    if not CHROMIUM.exists():
        pytest.fail(f"The browser tests need Chromium at {CHROMIUM} (apt-get install chromium).")
    project = client.post("/api/v1/projects", headers=owner["headers"], json=TAGGING).get_json()
    archive = tmp_path / "holiday.zip"
    archive.write_bytes(make_zip({"a.jpg": photo(seed=1, gps=True), "b.jpg": photo(600, 400, orientation=6, seed=2),
                                  "c.png": png_bytes(colour="green"), "notes.txt": b"hello",
                                  "fake.jpg": b"<!DOCTYPE html><html><script>alert(1)</script></html>"}))
    uploaded = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        shown = pool.submit(upload_on_the_page, server, owner["key"], project["name"], archive, uploaded)
        deadline = time.monotonic() + 60
        while not uploaded.wait(0.2):
            if shown.done() or time.monotonic() > deadline:
                shown.result(timeout=0)  # raises what went wrong in the browser
                pytest.fail("The upload never reached the worker's queue.")
        assert run_jobs() == 1
        page = shown.result(timeout=60)
    assert page["problems"] == []
    assert page["status"] == "Done: 4 of 4 files processed"
    assert page["summary"] == "3 units imported; 2 files not imported:"
    assert page["bar"] == [4, 4]
    assert "notes.txt: not an image file" in page["rejected"]
    assert "fake.jpg: HTML text passed off as an image" in page["rejected"]
