"""The volunteer app in Arabic (issue #7), in headless Chromium: tagging and crater marking finished by touch
on a 360x640 phone and by keyboard alone at 1280x800 as well, marks stored in image pixels exactly as the
same drawing in English (the image never mirrors), the language switch remembered from page to page, and
gold feedback and offline messages in Arabic.

Screenshots go to test-artifacts/ (``ar-*.png``).
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import (
    MARKING,
    PHONE,
    TAGGING,
    Fingers,
    ahead_is_loaded,
    gold_project,
    shoot,
    wait_for_answers,
    wait_for_next_unit,
    wait_for_unit,
)

pytestmark = pytest.mark.browser

DESKTOP = {"viewport": {"width": 1280, "height": 800}}
LABELS_AR = {"cat": "قطة", "dog": "كلب", "bird": "طائر"}
TAGGING_AR = {**TAGGING, "instructions": "Which animal is in the picture?", "languages": ["en", "ar"],
              "translations": {"ar": {"name": "قطط وكلاب", "instructions": "أي حيوان في الصورة؟",
                                      "labels": LABELS_AR}}}
MARKING_AR = {**MARKING, "languages": ["en", "ar"],
              "translations": {"ar": {"name": "فوهات القمر", "instructions": "ضع دائرة حول كل فوهة."}}}


def wait_for_thanks(page) -> None:  # type: ignore[no-untyped-def]
    page.get_by_role("heading", name="شكرًا لك!").wait_for()


def is_arabic(page) -> bool:  # type: ignore[no-untyped-def]
    return page.evaluate("[document.documentElement.lang, document.documentElement.dir]") == ["ar", "rtl"]


def tab_to(page, test: str, what: str, presses: int = 20) -> None:  # type: ignore[no-untyped-def]
    """Press Tab until ``test`` (a JS expression) holds for the focused element."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate(f"(() => {{ const e = document.activeElement; return {test}; }})()"):
            return
    pytest.fail(f"Tab never reached {what}")


def draw_circle_by_touch(page, fx: float, fy: float, drag: float) -> float:  # type: ignore[no-untyped-def]
    """Press a finger at (fx, fy) of the image's box and drag it ``drag`` screen pixels to the right; return the
    image's width on screen."""
    box = page.locator("#unit-image").bounding_box()
    start = (box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
    Fingers(page).drag(start, (start[0] + drag, start[1]))
    return box["width"]


def place_crater_with_keys(page) -> None:  # type: ignore[no-untyped-def]
    """From the focused drawing area: three steps right, a big step down, one size up, Enter."""
    for _ in range(3):
        page.keyboard.press("ArrowRight")  # 3 x 1% of the image's width, to the right on screen and in pixels
    page.keyboard.press("Shift+ArrowDown")  # 10% of the width
    page.keyboard.type("+")
    page.keyboard.press("Enter")


def test_tagging_by_touch_in_arabic_on_a_phone(pages, make_project, session_maker):
    """At 360x640 in Arabic: the labels' Arabic names, right to left; two taps finish the task."""
    project = make_project(TAGGING_AR, n=2)
    page = pages(f"/p/{project['slug']}?lang=ar", **PHONE)
    wait_for_unit(page)
    assert is_arabic(page)
    assert page.get_by_role("heading", level=1).inner_text() == "قطط وكلاب"
    assert page.get_by_role("group", name="اختر واحدًا").is_visible()
    cat, dog = (page.get_by_role("button", name=LABELS_AR[label]).bounding_box() for label in ("cat", "dog"))
    assert cat["x"] > dog["x"]  # the first label on the right
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # nothing sticks out sideways
    shoot(page, "ar-tagging-phone")
    first = page.get_attribute("#unit-image", "src")
    page.get_by_role("button", name="كلب").tap()
    wait_for_next_unit(page, first)
    assert page.locator("#session-text").inner_text().startswith("إجابة واحدة")
    assert "قدّمت إجابة واحدة" in page.locator("#status").inner_text()
    page.get_by_role("button", name="طائر").tap()
    wait_for_thanks(page)
    assert page.locator("#tally-answers").inner_text() == "2"
    shoot(page, "ar-tagging-phone-thanks")
    assert sorted(a.payload["label"] for a in wait_for_answers(page, session_maker, 2)) == ["bird", "dog"]


@pytest.mark.parametrize("options", [DESKTOP, PHONE], ids=["1280x800", "360x640"])
def test_tagging_by_keyboard_alone_in_arabic(pages, make_project, session_maker, options):
    """Tab to a label and press Enter; focus moves to the next image's first label; Enter again finishes."""
    project = make_project(TAGGING_AR, n=2, size=(640, 480))
    page = pages(f"/p/{project['slug']}?lang=ar", **options)
    wait_for_unit(page)
    assert is_arabic(page)
    tab_to(page, "e.dataset.label === 'dog'", "the label كلب")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"  # focus is visible
    shoot(page, f"ar-tagging-keyboard-{options['viewport']['width']}")
    first = page.get_attribute("#unit-image", "src")
    page.keyboard.press("Enter")
    wait_for_next_unit(page, first)
    assert page.evaluate("document.activeElement.dataset.label") == "cat"
    page.keyboard.press("Enter")
    wait_for_thanks(page)
    assert sorted(a.payload["label"] for a in wait_for_answers(page, session_maker, 2)) == ["cat", "dog"]


def test_a_crater_drawn_by_touch_in_arabic_is_stored_as_the_same_drawing_in_english(pages, make_project,
                                                                                      session_maker):
    """The same finger drag in Arabic and in English stores the same circle, in image pixels: not mirrored."""
    project = make_project({**MARKING_AR, "redundancy": 2}, n=1, size=(640, 480))
    drag, shown = 40, {}
    for lang in ("ar", "en"):
        page = pages(f"/p/{project['slug']}?lang={lang}", **PHONE)
        wait_for_unit(page)
        assert page.evaluate("getComputedStyle(document.getElementById('stage')).direction") == "ltr"
        shown[lang] = draw_circle_by_touch(page, 0.25, 0.5, drag)
        assert page.locator("#count").inner_text() == ("علامة واحدة" if lang == "ar" else "1 mark")
        shoot(page, f"ar-marking-touch-{lang}")
        page.get_by_role("button", name="إرسال" if lang == "ar" else "Submit").click()
        page.get_by_role("heading", name="شكرًا لك!" if lang == "ar" else "Thank you!").wait_for()
        if lang == "ar":
            shoot(page, "ar-marking-thanks")
    arabic, english = (a.payload["marks"] for a in wait_for_answers(page, session_maker, 2))
    assert arabic == english and shown["ar"] == shown["en"]
    [mark] = arabic
    assert abs(mark["x"] - 160) <= 3 and abs(mark["y"] - 240) <= 3  # a quarter from the left, as drawn
    assert abs(mark["r"] - drag * 640 / shown["ar"]) <= 3  # screen pixels turned into image pixels


@pytest.mark.parametrize("options", [DESKTOP, PHONE], ids=["1280x800", "360x640"])
def test_a_crater_placed_by_keyboard_alone_in_arabic_is_not_mirrored(pages, make_project, session_maker,
                                                                     options):
    """ArrowRight moves the cursor right in Arabic too: the stored circle is the English test's, in pixels."""
    project = make_project(MARKING_AR, n=1, size=(640, 480))
    page = pages(f"/p/{project['slug']}?lang=ar", **options)
    wait_for_unit(page)
    assert is_arabic(page)
    tab_to(page, "e.id === 'surface'", "the drawing area")
    place_crater_with_keys(page)
    assert page.locator("#count").inner_text() == "علامة واحدة"
    assert page.locator("#surface .cursor").count() == 1
    shoot(page, f"ar-marking-keyboard-{options['viewport']['width']}")
    tab_to(page, "e.id === 'submit'", "إرسال")
    page.keyboard.press("Enter")
    wait_for_thanks(page)
    [answer] = wait_for_answers(page, session_maker, 1)
    assert answer.payload == {"marks": [{"x": 339.2, "y": 304.0, "r": 32.0}]}  # as in tests/test_browser.py


def test_the_language_switch_changes_the_page_and_is_remembered(pages, make_project):
    """English page → العربية: the page turns Arabic and right to left; the next page stays Arabic; English
    switches back on the same page."""
    project = make_project(TAGGING_AR, n=1)
    page = pages("/", **PHONE)
    assert page.evaluate("document.documentElement.dir") == "ltr"
    switch = page.get_by_role("navigation", name="Language")
    assert switch.get_by_role("link", name="English").get_attribute("aria-current") == "true"
    shoot(page, "ar-switch-before")
    switch.get_by_role("link", name="العربية").tap()
    page.get_by_role("heading", name="ساعد العلم في دقائق معدودة").wait_for()
    assert is_arabic(page)
    assert page.get_by_role("navigation", name="اللغة").get_by_role("link", name="العربية") \
        .get_attribute("aria-current") == "true"
    shoot(page, "ar-index")
    page.get_by_role("link", name="قطط وكلاب", exact=True).tap()  # no ?lang= on this link: the cookie remembers
    wait_for_unit(page)
    assert is_arabic(page) and "lang=" not in page.url
    assert page.get_by_role("button", name="طريقة المشاركة").is_visible()
    shoot(page, "ar-task-remembered")
    page.get_by_role("navigation", name="اللغة").get_by_role("link", name="English").tap()
    wait_for_unit(page)
    assert page.evaluate("document.documentElement.dir") == "ltr"
    assert page.url.endswith(f"/p/{project['slug']}?lang=en")
    assert page.get_by_role("button", name="cat").is_visible()


def test_gold_feedback_on_tagging_is_in_arabic(pages, client, owner, run_jobs):
    """After a practice image the kind message is Arabic and names the known answer by its Arabic name."""
    project = gold_project(client, owner, run_jobs, TAGGING_AR, [("a.png", "dog"), ("b.png", "")])
    page = pages(f"/p/{project['slug']}?lang=ar", **PHONE)
    wait_for_unit(page)
    page.get_by_role("button", name="قطة").tap()
    message = page.get_by_role("status").filter(has_text="صورة تدريبية")
    message.wait_for()
    assert "«كلب»" in message.inner_text()
    shoot(page, "ar-gold-tagging")


def test_gold_feedback_on_marks_is_in_arabic_and_draws_the_known_marks_unmirrored(pages, client, owner,
                                                                                   run_jobs):
    """The known marks of a practice image are drawn where they are in the image, with an Arabic note."""
    known = [{"x": 420, "y": 200, "r": 60}]
    project = gold_project(client, owner, run_jobs, MARKING_AR, [("a.png", json.dumps(known)), ("b.png", "")],
                           size=(640, 480))
    page = pages(f"/p/{project['slug']}?lang=ar", **PHONE)
    wait_for_unit(page)
    box = page.locator("#unit-image").bounding_box()
    Fingers(page).tap((box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5))
    page.get_by_role("button", name="إرسال").click()
    page.get_by_role("button", name="الصورة التالية").wait_for()
    assert "مرسومة بخط متقطع" in page.locator("#review-note").inner_text()
    drawn = page.locator("#surface .expected")
    assert [float(drawn.get_attribute(name)) for name in ("cx", "cy", "r")] == [420, 200, 60]
    ring = drawn.bounding_box()
    assert ring["x"] + ring["width"] / 2 > box["x"] + box["width"] / 2  # right of centre, as in the image
    assert page.get_by_text("العلامات المتوقعة (بخط متقطع)").is_visible()
    shoot(page, "ar-gold-marking")


def test_offline_answers_are_explained_in_arabic(pages, make_project, session_maker):
    """Offline, answers wait on the device and the page says so in Arabic; back online they are stored."""
    project = make_project(TAGGING_AR, n=4)
    page = pages(f"/p/{project['slug']}?lang=ar", **PHONE)
    pages.expected.append("ERR_INTERNET_DISCONNECTED")
    wait_for_unit(page)
    ahead_is_loaded(page)  # the next image is here
    page.context.set_offline(True)
    first = page.get_attribute("#unit-image", "src")
    page.get_by_role("button", name="قطة").tap()
    second = wait_for_next_unit(page, first)
    page.get_by_role("button", name="كلب").tap()
    alert = page.get_by_role("alert").filter(has_text="إجابتان محفوظتان على هذا الجهاز")
    alert.wait_for()
    assert "أنت غير متصل بالإنترنت." in alert.inner_text()
    assert page.get_by_role("button", name="إعادة المحاولة الآن").is_visible()
    shoot(page, "ar-offline")
    page.context.set_offline(False)
    wait_for_next_unit(page, second)
    assert sorted(a.payload["label"] for a in wait_for_answers(page, session_maker, 2)) == ["cat", "dog"]
