"""The owner's dashboard and the public project page, driven in headless Chromium.

The Chromium, its launch options, the phone-sized pages, the server and the owner's sign-in
are those of tests/test_browser.py. Playwright's sync API allows one Playwright per thread,
and tests/test_browser.py keeps the main thread's for the whole session, so these tests
drive their Chromium from a thread of their own: each browser step is a function handed to
that thread, while answers and jobs stay on the main thread (RQ's worker needs it).
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import pytest

from tests.conftest import TAGGING, answer
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, PHONE, TIMEOUT_MS, collect_problems, shoot, sign_in_with_key

pytestmark = pytest.mark.browser


class Chromium:
    """A Chromium with its own Playwright, in a thread of its own; :meth:`do` runs a step there."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.problems: list[str] = []
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")
        self._playwright: Any = None
        self._browser: Any = None
        self.do(self._start)

    def _start(self) -> None:
        if not CHROMIUM.exists():
            pytest.fail(f"The browser tests need Chromium at {CHROMIUM} (apt-get install chromium); "
                        "they never download a browser.")
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)

    def _stop(self) -> None:
        self._browser.close()
        self._playwright.stop()

    def do(self, step: Callable[..., Any], *args: Any) -> Any:
        """Run ``step(*args)`` in the browser's thread and return its result (or raise its error)."""
        return self._thread.submit(step, *args).result()

    def new_page(self, path: str) -> Any:
        """A new phone-sized page at ``path`` (call it in the browser's thread, from a step)."""
        context = self._browser.new_context(**PHONE)
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        collect_problems(page, self.problems)
        page.goto(self.base_url + path)
        return page

    def close(self) -> None:
        try:
            self.do(self._stop)
        finally:
            self._thread.shutdown()


@pytest.fixture()
def chromium(server: str) -> Iterator[Chromium]:
    """Chromium on the real app; fails the test on any script error, policy error or HTTP error."""
    browser = Chromium(server)
    yield browser
    browser.close()
    assert not browser.problems, browser.problems


def give_answers(client, project: dict[str, Any], new_volunteer, labels: list[str]) -> None:  # type: ignore
    """One new volunteer per label: each is served the next unit and answers it."""
    for label in labels:
        headers = new_volunteer()
        served = client.post(f"/api/v1/projects/{project['id']}/next", headers=headers).get_json()
        assert answer(client, headers, served["unit"]["id"], {"label": label}).status_code == 201


def open_dashboard(chromium: Chromium, owner: dict[str, Any], project: dict[str, Any]) -> Any:
    """Sign the owner in (as tests/test_browser.py does) and open the project's page, once its plots are drawn."""
    page = chromium.new_page("/owner/login")
    sign_in_with_key(page, owner["key"])
    page.get_by_role("link", name=project["name"]).tap()
    page.wait_for_selector("#dashboard[aria-busy='false']")
    return page


def segments(page) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    """The unit counts the stacked bar's open, in progress and retired segments stand for."""
    return tuple(page.get_attribute(f"#plot-units rect.seg-{state}", "data-value")  # type: ignore[return-value]
                 for state in ("open", "in-progress", "retired"))


def answers_drawn(page) -> int:  # type: ignore[no-untyped-def]
    """The answers the bars of the answers-per-hour plot add up to."""
    return page.evaluate("[...document.querySelectorAll('#plot-answers rect.bar')]"
                         ".reduce((sum, bar) => sum + Number(bar.dataset.value), 0)")


def bars(page, plot: str) -> int:  # type: ignore[no-untyped-def]
    return page.locator(f"#plot-{plot} rect.bar").count()


def test_the_dashboard_draws_its_plots_and_follows_new_answers(chromium, make_project, owner, client,
                                                               new_volunteer, run_jobs):
    """The owner's dashboard draws every plot, then redraws by itself when more answers arrive."""
    project = make_project({**TAGGING, "description": "Tell cats from dogs."}, n=4)
    give_answers(client, project, new_volunteer, ["cat", "cat", "dog", "bird"])  # one unit full, one started
    run_jobs()

    def first_look() -> tuple[Any, int]:
        page = open_dashboard(chromium, owner, project)
        assert [bars(page, plot) for plot in ("units", "answers", "volunteers", "confidence", "agreement",
                                              "per-volunteer")] == [3, 48, 48, 10, 10, 5]
        assert page.locator("#plot-gold svg").count() == 1
        assert segments(page) == ("2", "1", "1")
        assert answers_drawn(page) == 4
        assert page.locator("#plot-units-text").inner_text() == \
            "2 open, 1 in progress and 1 retired of 4 units (25% done)."
        assert page.locator("#dash-eta").inner_text().startswith("About 2 hours left")
        shoot(page, "dashboard")
        return page, int(page.get_attribute("#dashboard", "data-renders"))

    page, renders = chromium.do(first_look)
    give_answers(client, project, new_volunteer, ["bird", "bird"])  # the second unit is full too
    run_jobs()

    def after_more_answers() -> None:
        page.wait_for_function("n => Number(document.getElementById('dashboard').dataset.renders) > n",
                               arg=renders)  # redrawn by the 10 s refresh, with no reload
        page.wait_for_function("() => document.querySelector('#plot-units rect.seg-retired').dataset.value === '2'")
        assert segments(page) == ("2", "0", "2")
        assert answers_drawn(page) == 6
        assert page.locator("#plot-confidence rect.bar[data-value='1']").count() == 2
        shoot(page, "dashboard-updated")
        narrow = page.get_attribute("#plot-answers svg", "width")
        page.set_viewport_size({"width": 1280, "height": 900})  # the plots are drawn again to the new width
        page.wait_for_function("w => document.querySelector('#plot-answers svg').getAttribute('width') !== w",
                               arg=narrow)
        shoot(page, "dashboard-desktop")

    chromium.do(after_more_answers)


def test_the_dashboard_of_an_empty_project_says_so(chromium, make_project, owner):
    """With no answers yet, the plots are drawn empty and the text says what is missing."""
    project = make_project(TAGGING, n=2)

    def look() -> None:
        page = open_dashboard(chromium, owner, project)
        assert bars(page, "answers") == 48 and answers_drawn(page) == 0
        assert page.locator("#plot-answers-text").inner_text() == "No answers in the last 48 hours."
        assert "no estimate" in page.locator("#dash-eta").inner_text()
        shoot(page, "dashboard-empty")

    chromium.do(look)


def test_the_about_page_shows_progress_and_results_on_a_phone(chromium, make_project, client, new_volunteer,
                                                              run_jobs):
    """The public page shows the progress bar, the units per label and the method, and links to the task."""
    project = make_project({**TAGGING, "description": "Tell cats from dogs."}, n=3)
    give_answers(client, project, new_volunteer, ["cat", "cat", "dog", "bird", "bird", "bird", "dog"])
    run_jobs()

    def look() -> None:
        page = chromium.new_page(f"/p/{project['slug']}/about")
        assert page.get_attribute("#about-progress", "value") == "2"
        rows = page.locator("#label-summary tbody tr")
        assert [rows.nth(i).inner_text().split() for i in range(3)] == [["cat", "1"], ["dog", "0"], ["bird", "1"]]
        assert page.get_by_text("Majority vote").count() == 1
        shoot(page, "about")
        page.get_by_role("link", name="Help with this project").tap()
        page.wait_for_url(f"**/p/{project['slug']}")

    chromium.do(look)
