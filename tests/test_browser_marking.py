"""Marking on a phone: zoom and pan with two fingers, the magnifier, handles, and marks from the keyboard.

Fingers are Chromium's own touch input (the DevTools protocol's Input.dispatchTouchEvent), so the
page sees the pointer events a phone sends. Every stored mark is checked in image pixels.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import MARKING, Fingers, shoot, stored, wait_for_thanks, wait_for_unit

pytestmark = pytest.mark.browser

SIZE = (640, 480)


def stage_box(page: Any) -> dict[str, float]:
    box = page.locator("#stage").bounding_box()
    assert box is not None
    return box


def at(box: dict[str, float], fx: float, fy: float) -> tuple[float, float]:
    return box["x"] + box["width"] * fx, box["y"] + box["height"] * fy


def zoom_scale(page: Any) -> float:
    return page.evaluate("new DOMMatrix(getComputedStyle(document.getElementById('viewport')).transform).a")


def submitted_marks(page: Any, session_maker: Any) -> list[dict[str, float]]:
    page.locator("#submit").click()
    wait_for_thanks(page)
    [answer] = stored(session_maker)
    return answer.payload["marks"]


def assert_close(mark: dict[str, float], expected: dict[str, float], tolerance: float = 3.0) -> None:
    assert mark.keys() == expected.keys(), mark
    for key, value in expected.items():
        assert abs(mark[key] - value) <= tolerance, (key, mark, expected)


@pytest.mark.parametrize("language", ["en", "ar"])
def test_two_fingers_zoom_without_scrolling_and_a_circle_drawn_zoomed_is_in_image_pixels(phone, make_project,
                                                                                         session_maker, language):
    """Spreading two fingers around the middle zooms in there; a circle drawn then is stored where it is on the
    image, in Arabic (right to left) as in English."""
    project = make_project(MARKING, n=1, size=SIZE)
    page = phone.new_page(f"/p/{project['slug']}?lang={language}")
    wait_for_unit(page)
    fingers = Fingers(page)
    box = stage_box(page)
    scroll = page.evaluate("window.scrollY")
    middle = at(box, 0.5, 0.5)
    start = [(middle[0] - 30, middle[1]), (middle[0] + 30, middle[1])]
    end = [(middle[0] - 90, middle[1]), (middle[0] + 90, middle[1])]
    fingers.down(*start)
    fingers.move(start, end)
    fingers.up()
    assert zoom_scale(page) == pytest.approx(3, rel=0.05)  # the fingers' spread tripled
    assert page.evaluate("window.scrollY") == scroll
    assert page.locator("#surface .mark").count() == 0  # two fingers draw nothing
    # At 3x, the middle of the image stays in the middle: draw a circle of 30 screen pixels there.
    fingers.drag(middle, (middle[0] + 30, middle[1]))
    shoot(page, f"marking-zoomed-{language}")
    screen_to_image = SIZE[0] / box["width"] / 3
    [mark] = submitted_marks(page, session_maker)
    assert_close(mark, {"x": 320, "y": 240, "r": 30 * screen_to_image}, tolerance=2)


def test_two_fingers_moved_together_pan_the_zoomed_image(phone, make_project):
    """Once zoomed, two fingers moved together carry the image with them, within its edges."""
    page = phone(make_project(MARKING, n=1, size=SIZE))
    fingers = Fingers(page)
    box = stage_box(page)
    page.get_by_role("button", name="Zoom in").click()
    before = page.evaluate("new DOMMatrix(getComputedStyle(document.getElementById('viewport')).transform).e")
    start = [at(box, 0.4, 0.5), at(box, 0.6, 0.5)]
    fingers.down(*start)
    fingers.move(start, [(x + 50, y) for x, y in start])
    fingers.up()
    after = page.evaluate("new DOMMatrix(getComputedStyle(document.getElementById('viewport')).transform).e")
    assert after == pytest.approx(before + 50, abs=2)
    fingers.down(*start)
    fingers.move(start, [(x + 2000, y) for x, y in start])  # far past the image's left edge
    fingers.up()
    assert page.evaluate("new DOMMatrix(getComputedStyle(document.getElementById('viewport')).transform).e") == 0


def test_zoom_buttons_zoom_in_and_out_without_a_gesture(phone, make_project):
    """The zoom buttons do what pinching does, for one finger or a mouse (WCAG 2.5.1)."""
    page = phone(make_project(MARKING, n=1, size=SIZE))
    zoom_in = page.get_by_role("button", name="Zoom in")
    zoom_out = page.get_by_role("button", name="Zoom out")
    assert zoom_out.is_disabled()
    zoom_in.click()
    zoom_in.click()
    assert zoom_scale(page) == pytest.approx(4)
    assert zoom_out.is_enabled()
    zoom_out.click()
    zoom_out.click()
    assert zoom_scale(page) == pytest.approx(1)
    assert zoom_out.is_disabled()


def test_the_magnifier_shows_what_is_under_the_finger_in_the_far_corner(phone, make_project):
    """While a finger draws, a magnifier shows the spot under it, in the top corner across from it; then it goes."""
    page = phone(make_project(MARKING, n=1, size=SIZE))
    fingers = Fingers(page)
    box = stage_box(page)
    start = at(box, 0.2, 0.3)
    fingers.down(start)
    fingers.move([start], [(start[0] + 20, start[1])])
    loupe = page.locator("#loupe")
    assert loupe.is_visible()
    shoot(page, "marking-magnifier")
    spot = loupe.bounding_box()
    assert spot["x"] > box["x"] + box["width"] / 2  # across from a finger on the left
    view = [float(v) for v in loupe.get_attribute("viewBox").split()]
    finger_x = (0.2 * box["width"] + 20) * SIZE[0] / box["width"]
    assert view[0] + view[2] / 2 == pytest.approx(finger_x, abs=2)  # centred on the finger, in image pixels
    assert loupe.locator("image").count() == 1
    fingers.up()
    assert loupe.is_hidden()


def test_a_finger_moving_while_the_drawing_area_has_no_size_changes_nothing(phone, make_project, session_maker):
    """While the page is laid out anew (a phone turning) the drawing area can have no size for a moment; a move
    then means no place on the image, so the circle keeps the size it had and nothing is drawn at infinity."""
    page = phone(make_project(MARKING, n=1, size=SIZE))
    fingers = Fingers(page)
    box = stage_box(page)
    centre, edge = at(box, 0.5, 0.5), at(box, 0.6, 0.5)  # a radius of 64 image pixels
    fingers.down(centre)
    fingers.move([centre], [edge])
    page.evaluate("() => { document.getElementById('stage').style.width = '0px'; }")
    fingers.move([edge], [at(box, 0.9, 0.5)])
    page.evaluate("() => { document.getElementById('stage').style.width = ''; }")
    fingers.up()
    [mark] = submitted_marks(page, session_maker)
    assert_close(mark, {"x": 320, "y": 240, "r": 64})


def test_a_point_slides_under_the_finger_until_it_lifts(phone, make_project, session_maker):
    """With the point tool a press can be slid to the exact spot: the point goes where the finger lifts."""
    page = phone(make_project({**MARKING, "marking_tool": "point"}, n=1, size=SIZE))
    box = stage_box(page)
    Fingers(page).drag(at(box, 0.5, 0.5), at(box, 0.75, 0.25))
    [mark] = submitted_marks(page, session_maker)
    assert_close(mark, {"x": 480, "y": 120})


def test_a_selected_circle_moves_when_dragged_and_resizes_by_its_handle(phone, make_project, session_maker):
    """Tap a circle to select it; drag its inside to move it, its handle to resize it; one Undo per drag."""
    page = phone(make_project(MARKING, n=1, size=SIZE))
    fingers = Fingers(page)
    box = stage_box(page)
    to_screen = box["width"] / SIZE[0]
    fingers.tap(at(box, 0.25, 0.5))  # a circle at (160, 240), radius 25.6
    fingers.tap((box["x"] + (160 + 25.6) * to_screen, box["y"] + box["height"] / 2))  # on its ring: selected
    assert page.locator("#surface .mark.selected").count() == 1
    fingers.drag(at(box, 0.25, 0.5), at(box, 0.5, 0.5))  # moved to (320, 240)
    handle = page.locator("#surface .handle-dot").bounding_box()
    centre = (handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    assert centre[0] == pytest.approx(box["x"] + (320 + 25.6) * to_screen + 20, abs=2)  # just right of its edge
    fingers.drag(centre, (centre[0] + 64 * to_screen, centre[1]))  # radius 25.6 + 64
    shoot(page, "marking-handles")
    assert page.locator("#count").inner_text() == "1 mark"
    [mark] = submitted_marks(page, session_maker)
    assert_close(mark, {"x": 320, "y": 240, "r": 89.6})


def test_undo_takes_back_a_move(phone, make_project):
    """A drag of a selected circle is one change: Undo puts it back where it was."""
    page = phone(make_project(MARKING, n=1, size=SIZE))
    box = stage_box(page)
    fingers = Fingers(page)
    fingers.tap(at(box, 0.25, 0.5))
    fingers.tap((box["x"] + (160 + 25.6) * box["width"] / SIZE[0], box["y"] + box["height"] / 2))
    fingers.drag(at(box, 0.25, 0.5), at(box, 0.5, 0.5))
    page.get_by_role("button", name="Undo").click()
    ring = page.locator("#surface .mark .ring")
    assert float(ring.get_attribute("cx")) == pytest.approx(160)


def test_marks_are_reached_with_tab_moved_with_arrows_and_named_with_their_place(phone, make_project,
                                                                               session_maker):
    """Keyboard alone: Tab selects each mark in turn (its name says where it is), arrows move it, + grows it,
    Tab past the last mark leaves the drawing area, and Delete removes a selected mark."""
    page = phone(make_project(MARKING, n=1, size=SIZE))
    page.locator("#surface").focus()
    page.keyboard.press("Enter")  # a circle in the middle
    for _ in range(4):
        page.keyboard.press("Shift+ArrowLeft")  # 4 x 10% of the width to the left
    page.keyboard.press("Enter")  # and one at the left
    page.keyboard.press("Tab")
    assert page.locator("#surface .mark.selected").get_attribute("aria-label") == "Mark 1 of 2, centre, small"
    assert page.locator("#mark-note").inner_text() == "Selected, Mark 1 of 2, centre, small"
    page.keyboard.press("Shift+ArrowDown")  # the selected mark, 64 px down
    page.keyboard.type("+")
    page.keyboard.press("Tab")
    assert page.locator("#surface .mark.selected").get_attribute("aria-label") == "Mark 2 of 2, left, small"
    page.keyboard.press("Delete")
    assert page.locator("#count").inner_text() == "1 mark"
    page.keyboard.press("Tab")  # select mark 1 again
    page.keyboard.press("Tab")  # past the last: on to the next control
    assert page.evaluate("document.activeElement.id") != "surface"
    assert page.locator("#surface .mark.selected").count() == 0
    [mark] = submitted_marks(page, session_maker)
    assert mark == {"x": 320, "y": 304, "r": 32}


def test_the_keyboard_cursor_stays_in_view_when_zoomed(phone, make_project):
    """Zoomed in, moving the cursor towards an edge pans the image so the cursor is never off screen."""
    page = phone(make_project(MARKING, n=1, size=SIZE))
    page.get_by_role("button", name="Zoom in").click()
    page.get_by_role("button", name="Zoom in").click()
    page.locator("#surface").focus()
    for _ in range(4):
        page.keyboard.press("Shift+ArrowRight")  # to 90% of the width
    cursor = page.locator("#surface .cursor circle").bounding_box()
    box = stage_box(page)
    assert box["x"] <= cursor["x"] + cursor["width"] / 2 <= box["x"] + box["width"]
