"""The volunteer task page driven in headless Chromium on a phone-sized screen.

The real app is served on a free local port; Chromium is the system one (/usr/bin/chromium),
never a downloaded browser. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from tests.conftest import (
    MARKING,
    TAGGING,
    Fingers,
    shoot,
    sign_in_with_key,
    stored,
    wait_for_next_unit,
    wait_for_thanks,
)

pytestmark = pytest.mark.browser

def image_box(page) -> dict[str, float]:  # type: ignore[no-untyped-def]
    box = page.locator("#unit-image").bounding_box()
    assert box is not None
    return box


def assert_close(mark: dict[str, float], expected: dict[str, float], tolerance: float = 3.0) -> None:
    assert mark.keys() == expected.keys(), mark
    for key, value in expected.items():
        assert abs(mark[key] - value) <= tolerance, (key, mark, expected)


def test_tapping_a_label_stores_the_answer_and_shows_the_next_unit(phone, make_project, session_maker):
    """A volunteer taps a label: the answer is stored and the next unit appears."""
    project = make_project({**TAGGING, "instructions": "Which animal is in the picture?"}, n=2)
    page = phone(project)
    first = page.get_attribute("#unit-image", "src")
    shoot(page, "tagging")
    button = page.get_by_role("button", name="dog")
    assert button.bounding_box()["height"] >= 48
    button.tap()
    second = wait_for_next_unit(page, first)
    assert second != first
    answers = stored(session_maker)
    assert [a.payload for a in answers] == [{"label": "dog"}]
    assert answers[0].duration_ms is not None and answers[0].duration_ms >= 0
    assert "1 done" in page.locator("#status").inner_text()
    shoot(page, "tagging-next")


def test_three_volunteers_reach_consensus_in_the_export(phone, make_project, run_jobs, client, owner):
    """Three anonymous volunteers tag a one-unit project; the owner's export shows the majority label."""
    project = make_project(TAGGING, n=1)
    for label in ("bird", "cat", "bird"):
        page = phone(project)
        page.get_by_role("button", name=label).tap()
        wait_for_thanks(page)
    shoot(page, "tagging-thanks")
    assert run_jobs() == 1
    exported = client.get(f"/api/v1/projects/{project['id']}/export?kind=consensus&format=csv",
                          headers=owner["headers"])
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert [(row["label"], row["n_answers"]) for row in rows] == [("bird", "3")]


def test_several_labels_are_toggled_then_submitted(phone, make_project, session_maker):
    """In a multi-select project the volunteer toggles labels, then Submit stores them all."""
    project = make_project({**TAGGING, "multi_select": True}, n=1)
    page = phone(project)
    for label in ("bird", "cat", "dog", "dog"):  # dog on and off again
        page.get_by_role("button", name=label).tap()
    assert page.get_by_role("button", name="cat").get_attribute("aria-pressed") == "true"
    assert page.get_by_role("button", name="dog").get_attribute("aria-pressed") == "false"
    shoot(page, "tagging-multi")
    page.get_by_role("button", name="Submit").tap()
    wait_for_thanks(page)
    assert [a.payload for a in stored(session_maker)] == [{"labels": ["cat", "bird"]}]


def test_a_circle_drawn_by_touch_is_stored_in_image_pixels(phone, make_project, session_maker):
    """A press-and-drag with a finger draws a circle, stored in the image's own pixels."""
    project = make_project({**MARKING, "instructions": "Circle every crater."}, n=1, size=(640, 480))
    page = phone(project)
    box = image_box(page)
    assert 300 <= box["width"] <= 345, box  # shown at about half size: the scale conversion matters
    scale = 640 / box["width"]
    drag = 40
    scroll_before = page.evaluate("window.scrollY")
    start = (box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5)
    Fingers(page).drag(start, (start[0] + drag, start[1]))
    assert page.evaluate("window.scrollY") == scroll_before  # dragging on the image never scrolls
    assert page.locator("#count").inner_text() == "1 mark"
    shoot(page, "marking")
    # A click, not a tap: right after a touch sequence Chromium may swallow a second tap as a ghost
    # click when the machine is slow; what this test checks is the drawing, not the button.
    page.get_by_role("button", name="Submit").click()
    wait_for_thanks(page)
    [answer] = stored(session_maker)
    [mark] = answer.payload["marks"]
    assert_close(mark, {"x": 160, "y": 240, "r": drag * scale})


def test_a_tap_with_the_point_tool_stores_a_point(phone, make_project, session_maker):
    """With the point tool a tap stores a point (no radius) in image pixels."""
    project = make_project({**MARKING, "marking_tool": "point"}, n=1, size=(640, 480))
    page = phone(project)
    box = image_box(page)
    Fingers(page).tap((box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.25))
    shoot(page, "marking-point")
    page.get_by_role("button", name="Submit").tap()
    wait_for_thanks(page)
    [answer] = stored(session_maker)
    [mark] = answer.payload["marks"]
    assert_close(mark, {"x": 480, "y": 120})


def test_a_crater_is_placed_with_the_keyboard_alone(phone, make_project, session_maker):
    """Tab to the image, move the cursor with arrows, grow it with +, place with Enter, submit from the keyboard."""
    project = make_project(MARKING, n=1, size=(640, 480))
    page = phone(project)

    def tab_to(element_id: str) -> None:
        for _ in range(12):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == element_id:
                return
        pytest.fail(f"Tab never reached #{element_id}")

    tab_to("surface")
    for _ in range(3):
        page.keyboard.press("ArrowRight")  # 3 x 1% of the width
    page.keyboard.press("Shift+ArrowDown")  # 10% of the width
    page.keyboard.type("+")
    page.keyboard.press("Enter")
    assert page.locator("#count").inner_text() == "1 mark"
    assert page.locator("#surface .cursor").count() == 1  # the cursor is visible
    shoot(page, "marking-keyboard")
    tab_to("submit")
    page.keyboard.press("Enter")
    wait_for_thanks(page)
    [answer] = stored(session_maker)
    assert answer.payload == {"marks": [{"x": 339.2, "y": 304.0, "r": 32.0}]}


def test_nothing_here_stores_an_empty_list_of_marks(phone, make_project, session_maker):
    """'Nothing here' stores an answer with no marks."""
    project = make_project(MARKING, n=1, size=(640, 480))
    page = phone(project)
    page.get_by_role("button", name="Nothing here").tap()
    wait_for_thanks(page)
    shoot(page, "marking-thanks")
    assert [a.payload for a in stored(session_maker)] == [{"marks": []}]


def test_tapping_a_mark_selects_it_for_removal_and_undo_restores_it(phone, make_project):
    """Tapping a mark selects it; Remove selected deletes it; Undo brings it back."""
    project = make_project(MARKING, n=1, size=(640, 480))
    page = phone(project)
    box = image_box(page)
    fingers = Fingers(page)
    for fx in (0.3, 0.7):
        fingers.tap((box["x"] + box["width"] * fx, box["y"] + box["height"] * 0.5))
    assert page.locator("#count").inner_text() == "2 marks"
    default_r = 640 * 0.04 * box["width"] / 640  # on screen
    fingers.tap((box["x"] + box["width"] * 0.3 + default_r, box["y"] + box["height"] * 0.5))  # on its ring
    assert page.locator("#surface .mark.selected").count() == 1
    shoot(page, "marking-selected")
    page.get_by_role("button", name="Remove selected").tap()
    assert page.locator("#count").inner_text() == "1 mark"
    page.get_by_role("button", name="Undo").tap()
    assert page.locator("#count").inner_text() == "2 marks"


def test_an_answer_that_fails_to_send_is_kept_and_retried_with_the_same_id(phone, make_project, session_maker):
    """When the network fails, the marks are kept, the problem is shown, and Retry stores them once."""
    project = make_project(MARKING, n=1, size=(640, 480))
    page = phone(project)
    sent: list[dict[str, Any]] = []

    def flaky(route):  # type: ignore[no-untyped-def]
        sent.append(json.loads(route.request.post_data))
        route.abort() if len(sent) == 1 else route.continue_()

    page.route("**/answers", flaky)
    phone.expected.append("net::ERR_FAILED")  # the aborted request, logged by Chromium
    box = image_box(page)
    Fingers(page).tap((box["x"] + box["width"] / 2, box["y"] + box["height"] / 2))
    page.get_by_role("button", name="Submit").tap()
    alert = page.get_by_role("alert")
    alert.filter(has_text="answer is kept").wait_for()
    assert page.locator("#count").inner_text() == "1 mark"
    shoot(page, "marking-retry")
    page.get_by_role("button", name="Retry now").tap()
    wait_for_thanks(page)
    assert len(sent) == 2 and sent[0]["answer_id"] == sent[1]["answer_id"]
    assert [a.payload for a in stored(session_maker)] == [{"marks": [{"x": 320.0, "y": 240.0, "r": 25.6}]}]


def test_the_project_list_and_owner_pages_render_on_a_phone(phone, make_project, owner):
    """The project list and the owner's pages load on a phone with no script or policy errors."""
    project = make_project({**TAGGING, "description": "Tell cats from dogs."}, n=2)
    page = phone.new_page("/")
    assert page.get_by_role("link", name="Start").bounding_box()["height"] >= 48
    shoot(page, "index")
    page.goto(page.url + "owner/login")
    sign_in_with_key(page, owner["key"])
    page.get_by_role("link", name=project["name"]).tap()
    page.get_by_role("heading", name="Export", exact=True).wait_for()
    shoot(page, "owner-project")
    page.get_by_role("link", name="Settings").tap()
    page.get_by_role("group", name="Field guide").wait_for()
    shoot(page, "owner-settings")


def test_the_api_docs_page_lists_the_endpoints(phone):
    """The interactive API page draws every resource from the OpenAPI document, with no CDN."""
    page = phone.new_page("/api/docs")
    page.locator("#operations-tag-projects").wait_for()
    for tag in ("projects", "volunteers", "keys"):
        assert page.locator(f"#operations-tag-{tag}").count() == 1
    shoot(page, "api-docs")
