"""The volunteer app (issue #7) in headless Chromium: the project list, the tutorial and field guide,
tagging by touch and keyboard, "not sure" and skip, the session's end screen, gold feedback, answers
kept through lost connections and busy servers, right-to-left pages, and the page-weight budget.

The real app is served on a free local port; Chromium is the system one. Screenshots go to
test-artifacts/.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import select, update

from microtasks.models import Assignment, Unit, UnitState
from tests.conftest import (
    MARKING,
    PHONE,
    TAGGING,
    Fingers,
    ahead_is_loaded,
    gold_project,
    png_bytes,
    shoot,
    stored,
    wait_for_answers,
    wait_for_next_unit,
    wait_for_thanks,
    wait_for_unit,
)

pytestmark = pytest.mark.browser

#: HTML, CSS and JavaScript a phone downloads before the first image, gzip-compressed (issue #7).
BUDGET_BYTES = 60_000


def test_the_project_list_filters_by_topic_with_time_and_progress(phone, make_project, client, new_volunteer):
    """Cards show the typical time a task takes and the progress; a topic shows only its projects."""
    space = make_project({**TAGGING, "name": "Space rocks", "slug": "space-rocks", "topics": ["space"],
                          "redundancy": 1}, n=3)
    make_project({**TAGGING, "name": "Garden birds", "slug": "garden-birds", "topics": ["wildlife"]}, n=1)
    headers = new_volunteer()
    units = client.post(f"/api/v1/projects/{space['id']}/next?count=2", headers=headers).get_json()["units"]
    for unit, ms in zip(units, (4000, 6000)):
        reply = client.post(f"/api/v1/units/{unit['id']}/answers", headers=headers,
                            json={"answer_id": f"00000000-0000-4000-8000-00000000000{unit['id'] % 10}",
                                  "payload": {"label": "cat"}, "duration_ms": ms})
        assert reply.status_code == 201
    page = phone.new_page("/")
    card = page.get_by_role("listitem").filter(has=page.get_by_role("heading", name="Space rocks"))
    assert "About 5 seconds a task" in card.inner_text()
    assert "2 of 3 images done" in card.inner_text()
    bar = card.get_by_role("progressbar", name="2 of 3 images done")
    assert (bar.get_attribute("value"), bar.get_attribute("max")) == ("2", "3")
    shoot(page, "index-topics")
    page.get_by_role("link", name="wildlife").tap()
    page.get_by_role("heading", name="Garden birds").wait_for()
    assert page.get_by_role("heading", name="Space rocks").count() == 0
    assert page.get_by_role("link", name="wildlife").get_attribute("aria-current") == "page"


def test_tagging_by_touch_finishes_a_task(phone, make_project, session_maker):
    """A tap on a label stores it and the next image follows, with the session counter at one answer."""
    project = make_project(TAGGING, n=2)
    page = phone(project)
    first = page.get_attribute("#unit-image", "src")
    page.get_by_role("button", name="bird").tap()
    wait_for_next_unit(page, first)
    assert [a.payload for a in wait_for_answers(page, session_maker, 1)] == [{"label": "bird"}]
    assert page.locator("#session-text").inner_text().startswith("1 answer")


def test_tagging_with_the_keyboard_alone(phone, make_project, session_maker):
    """Tab to a label and press Enter; focus stays on the labels, so the next answer is one key away."""
    project = make_project(TAGGING, n=2)
    page = phone(project)
    for _ in range(15):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.label") == "dog":
            break
    else:
        pytest.fail("Tab never reached the label 'dog'")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"  # focus is visible
    first = page.get_attribute("#unit-image", "src")
    page.keyboard.press("Enter")
    wait_for_next_unit(page, first)
    assert page.evaluate("document.activeElement.dataset.label") == "cat"  # the first label of the next image
    page.keyboard.press("Enter")
    wait_for_thanks(page)
    assert sorted(a.payload["label"] for a in wait_for_answers(page, session_maker, 2)) == ["cat", "dog"]


def test_not_sure_is_stored_as_an_unsure_answer(phone, make_project, session_maker):
    """'Not sure' stores {"unsure": true}, which counts toward nothing."""
    project = make_project(TAGGING, n=1)
    page = phone(project)
    page.get_by_role("button", name="Not sure").tap()
    wait_for_thanks(page)
    [answer] = stored(session_maker)
    assert answer.payload == {"unsure": True} and answer.counted is False


def test_skip_passes_the_image_on_without_an_answer(phone, make_project, session_maker):
    """'Skip' stores no answer, ends the lease at once and shows the next image."""
    project = make_project(TAGGING, n=2)
    page = phone(project)
    first = page.get_attribute("#unit-image", "src")
    with page.expect_response(lambda r: r.url.endswith("/skip")) as skipped:
        page.get_by_role("button", name="Skip", exact=True).tap()
    assert skipped.value.ok
    wait_for_next_unit(page, first)
    assert stored(session_maker) == []
    with session_maker() as session:
        unit_id = session.scalar(select(Unit.id).where(Unit.media == first.rsplit("/", 1)[1]))
        expires = session.scalar(select(Assignment.expires_at).where(Assignment.unit_id == unit_id))
    assert expires.replace(tzinfo=expires.tzinfo or timezone.utc) <= datetime.now(timezone.utc)  # the lease ended


def test_the_tutorial_shows_on_the_first_visit_can_be_skipped_and_reopens(phone, make_project):
    """A first visit opens the tutorial; Skip closes it for good on this device; How to opens it again."""
    project = make_project({**TAGGING, "tutorial": [
        {"title": "Look closely", "text": "Each image shows one animal, sometimes small."},
        {"title": "Tap its name", "text": "Not sure? That is a useful answer too."}]}, n=2)
    page = phone(project)
    tutorial = page.get_by_role("dialog", name="How to take part")
    assert tutorial.is_visible()
    assert "Look closely" in tutorial.inner_text() and "Step 1 of 2" in tutorial.inner_text()
    shoot(page, "tutorial")
    tutorial.get_by_role("button", name="Skip the tutorial").tap()
    assert not tutorial.is_visible()
    page.wait_for_function("() => document.activeElement.dataset.label === 'cat'")  # on to the task
    page.reload()
    wait_for_unit(page)
    assert not tutorial.is_visible()
    page.get_by_role("button", name="How to").tap()
    assert tutorial.is_visible()
    tutorial.get_by_role("button", name="Next", exact=True).tap()
    tutorial.get_by_role("heading", name="Tap its name").wait_for()
    tutorial.get_by_role("button", name="Start").tap()
    assert not tutorial.is_visible()
    page.wait_for_function("() => document.activeElement.id === 'howto-open'")  # focus went back to the button


def test_the_field_guide_shows_each_labels_help_and_example(phone, make_project, client, owner):
    """The field guide lists each label with its help and a lazily loaded example image."""
    project = make_project(TAGGING, n=1)
    example = client.post(f"/api/v1/projects/{project['id']}/images", headers=owner["headers"],
                          data={"file": (io.BytesIO(png_bytes(300, 200, "orange")), "cat.png")},
                          content_type="multipart/form-data").get_json()
    reply = client.patch(f"/api/v1/projects/{project['id']}", headers=owner["headers"], json={"field_guide": [
        {"label": "cat", "text": "Pointed ears and whiskers.", "image": example["media"]},
        {"label": "dog", "text": "A longer snout."}]})
    assert reply.status_code == 200, reply.get_json()
    page = phone(project)
    fetched = "performance.getEntriesByType('resource').filter(e => e.name.includes(name)).length"
    assert page.evaluate(f"name => {fetched}", example["media"]) == 0  # not before the guide is opened
    page.get_by_role("button", name="Field guide").tap()
    guide = page.get_by_role("dialog", name="Field guide")
    assert "Pointed ears and whiskers." in guide.inner_text() and "A longer snout." in guide.inner_text()
    picture = guide.get_by_role("img", name="An example of cat")
    assert picture.get_attribute("loading") == "lazy"
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=picture.element_handle())
    shoot(page, "field-guide")
    guide.get_by_role("button", name="Back to the task").tap()
    assert not guide.is_visible()
    page.wait_for_function("() => document.activeElement.id === 'guide-open'")


def test_the_end_screen_shows_the_answers_and_the_data_used(phone, make_project, session_maker):
    """When the project runs out, the end screen counts the answers, completed images and data used."""
    project = make_project({**TAGGING, "redundancy": 1}, n=2)
    page = phone(project)
    first = page.get_attribute("#unit-image", "src")
    page.get_by_role("button", name="cat").tap()
    wait_for_next_unit(page, first)
    page.get_by_role("button", name="dog").tap()
    wait_for_thanks(page)
    assert page.locator("#tally-answers").inner_text() == "2"
    assert page.locator("#tally-completed").inner_text() == "2"
    assert re.fullmatch(r"\d+ kB", page.locator("#tally-data").inner_text()), page.locator("#tally-data").inner_text()
    assert "completed 2 images" in page.locator("#done-impact").inner_text()
    assert page.get_by_role("link", name="More projects").is_visible()
    assert not page.get_by_role("button", name="Keep going").is_visible()  # nothing left to keep going with
    shoot(page, "session-end")


def test_ten_active_minutes_bring_the_end_screen_and_keep_going_continues(pages, server, make_project):
    """After ten active minutes the next answer opens the end screen; Keep going sets the next ten minutes."""
    project = make_project(TAGGING, n=3)
    page = pages(**PHONE)
    page.clock.install()
    page.goto(f"{server}/p/{project['slug']}")
    wait_for_unit(page)
    for _ in range(10):
        page.keyboard.press("Shift")  # someone is there: the time counts
        page.clock.run_for(60_000)
    assert page.locator("#session-text").inner_text() == "0 answers · 10 of 10 min"
    page.get_by_role("button", name="cat").tap()
    wait_for_thanks(page)
    assert "goal of 10 minutes" in page.locator("#done-reason").inner_text()
    shoot(page, "session-goal")
    page.get_by_role("button", name="Keep going").tap()
    wait_for_unit(page)
    assert page.locator("#session-text").inner_text() == "1 answer · 10 of 20 min"


def test_answers_given_offline_are_sent_once_when_the_connection_returns(phone, make_project, session_maker):
    """Offline, the volunteer answers the image fetched ahead too; back online, each answer is stored once."""
    project = make_project(TAGGING, n=4)
    page = phone(project)
    ahead_is_loaded(page)
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.post_data) if r.url.endswith("/answers") else None)
    phone.expected.append("ERR_INTERNET_DISCONNECTED")
    page.context.set_offline(True)
    first = page.get_attribute("#unit-image", "src")
    page.get_by_role("button", name="cat").tap()
    second = wait_for_next_unit(page, first)  # the image fetched ahead, from the device
    page.get_by_role("button", name="dog").tap()
    page.get_by_role("alert").filter(has_text="2 answers are kept on this device").wait_for()
    assert json.loads(page.evaluate(f"localStorage.getItem('microtasks:queue:{project['id']}')"))
    shoot(page, "offline")
    assert stored(session_maker) == []
    page.context.set_offline(False)
    wait_for_next_unit(page, second)
    answers = wait_for_answers(page, session_maker, 2)
    assert sorted(a.payload["label"] for a in answers) == ["cat", "dog"]
    assert len({a.unit_id for a in answers}) == 2
    ids = {a.answer_uuid for a in answers}
    tried = {item["answer_id"] for body in sent for item in json.loads(body).get("answers", [json.loads(body)])}
    assert tried == ids  # every id the page tried was stored, and nothing else
    assert page.evaluate(f"localStorage.getItem('microtasks:queue:{project['id']}')") is None


def test_an_answer_refused_with_503_is_sent_again_after_retry_after(phone, make_project, session_maker):
    """A 503 with Retry-After: 1 keeps the answer; the volunteer goes on; it is stored once, a second later."""
    project = make_project(TAGGING, n=3)
    page = phone(project)
    ahead_is_loaded(page)
    phone.expected.append("503")
    sent: list[dict[str, Any]] = []

    def busy_once(route):  # type: ignore[no-untyped-def]
        sent.append(json.loads(route.request.post_data))
        if len(sent) > 1:
            route.continue_()
            return
        body = {"code": 503, "status": "Service Unavailable", "message": "Back in a moment."}
        route.fulfill(status=503, headers={"Retry-After": "1"}, content_type="application/json", body=json.dumps(body))

    page.route("**/answers", busy_once)
    first = page.get_attribute("#unit-image", "src")
    page.get_by_role("button", name="bird").tap()
    wait_for_next_unit(page, first)  # the volunteer goes on while the answer waits
    assert "1 answer waiting to be sent" in page.locator("#queue-note").inner_text()
    shoot(page, "server-busy")
    [answer] = wait_for_answers(page, session_maker, 1)
    assert answer.payload == {"label": "bird"}
    assert len(sent) == 2 and sent[0]["answer_id"] == sent[1]["answer_id"] == answer.answer_uuid
    page.wait_for_function("() => document.getElementById('queue-note').textContent === ''")


def test_gold_feedback_on_a_tagging_unit_is_announced(phone, client, owner, run_jobs):
    """After a practice image with a known answer, a kind message with that answer is announced."""
    project = gold_project(client, owner, run_jobs, TAGGING, [("a.png", "dog"), ("b.png", "")])
    page = phone(project)
    page.get_by_role("button", name="cat").tap()
    message = page.get_by_role("status").filter(has_text="practice")
    message.wait_for()
    assert "“dog”" in message.inner_text()
    shoot(page, "gold-tagging")


def test_gold_feedback_on_marks_draws_the_known_marks_beside_the_volunteers(phone, client, owner, run_jobs,
                                                                           session_maker):
    """After a practice image with known marks, they are drawn dashed beside the volunteer's, until Next: the
    known mark the volunteer missed dotted, the volunteer's mark on no known one crossed out, and a count."""
    known = json.dumps([{"x": 420, "y": 200, "r": 60}])
    project = gold_project(client, owner, run_jobs, MARKING, [("a.png", known), ("b.png", "")], size=(640, 480))
    page = phone(project)
    box = page.locator("#unit-image").bounding_box()
    Fingers(page).tap((box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5))
    first = page.get_attribute("#unit-image", "src")
    page.get_by_role("button", name="Submit").click()
    next_button = page.get_by_role("button", name="Next image")
    next_button.wait_for()
    assert page.locator("#surface .expected.missed").count() == 1
    assert page.locator("#surface .mark.false .cross").count() == 1  # the volunteer's own mark stays, crossed
    assert page.get_by_role("img", name="Expected mark 1 of 1, which you missed").count() == 1
    assert page.locator("#legend").is_visible()
    note = page.get_by_role("status").filter(has_text="practice image").inner_text()
    assert "You found 0 of the 1 expected marks." in note and "shown dashed" in note
    assert page.evaluate("document.activeElement.id") == "next"
    shoot(page, "gold-marking")
    assert len(stored(session_maker)) == 1  # stored already: the feedback blocks nothing
    next_button.tap()
    wait_for_next_unit(page, first)
    assert page.locator("#surface .expected").count() == 0


def test_an_image_retired_while_on_screen_is_still_saved_and_credited(phone, make_project, session_maker):
    """Others finish the image while it is on screen: the answer is stored, and the page says so kindly."""
    project = make_project({**TAGGING, "redundancy": 1}, n=2)
    page = phone(project)
    media = page.get_attribute("#unit-image", "src").rsplit("/", 1)[1]
    with session_maker() as session:
        session.execute(update(Unit).where(Unit.media == media).values(state=UnitState.retired))
        session.commit()
    page.get_by_role("button", name="cat").tap()
    page.get_by_role("status").filter(has_text="finished the last image while you were on it").wait_for()
    [answer] = wait_for_answers(page, session_maker, 1)
    assert answer.payload == {"label": "cat"} and answer.counted is False


def test_right_to_left_pages_mirror_the_layout_but_not_the_image(phone, make_project, session_maker):
    """In Arabic the page runs right to left and shows the labels' Arabic names; answers keep the labels."""
    project = make_project({**TAGGING, "languages": ["en", "ar"], "translations": {"ar": {
        "name": "قطط وكلاب", "labels": {"cat": "قطة", "dog": "كلب", "bird": "طائر"}}}}, n=1)
    page = phone.new_page(f"/p/{project['slug']}?lang=ar")
    wait_for_unit(page)
    assert page.evaluate("document.documentElement.dir") == "rtl"
    assert page.evaluate("getComputedStyle(document.getElementById('stage')).direction") == "ltr"
    assert page.get_by_role("heading", level=1).inner_text() == "قطط وكلاب"
    cat, dog = (page.get_by_role("button", name=name).bounding_box() for name in ("قطة", "كلب"))
    assert cat["x"] > dog["x"]  # the first label is on the right
    shoot(page, "task-rtl")
    page.get_by_role("button", name="قطة").tap()
    page.get_by_role("heading", name="شكرًا لك!").wait_for()  # the end screen, in Arabic too
    assert [a.payload for a in wait_for_answers(page, session_maker, 1)] == [{"label": "cat"}]


def test_a_tagging_task_on_a_desktop_screen(pages, make_project, session_maker):
    """At 1280x800 with a mouse, the image stays within the screen and a click on a label answers."""
    project = make_project({**TAGGING, "instructions": "Which animal is in the picture?"}, n=2, size=(640, 480))
    page = pages(f"/p/{project['slug']}", viewport={"width": 1280, "height": 800})
    wait_for_unit(page)
    box = page.locator("#unit-image").bounding_box()
    assert box["y"] + box["height"] <= 800 and box["width"] <= 660
    assert page.get_by_role("button", name="Not sure").bounding_box()["y"] < 800  # no scrolling to answer
    shoot(page, "tagging-desktop")
    first = page.get_attribute("#unit-image", "src")
    page.get_by_role("button", name="dog").click()
    wait_for_next_unit(page, first)
    assert [a.payload for a in wait_for_answers(page, session_maker, 1)] == [{"label": "dog"}]


@pytest.mark.parametrize(("task", "language"), [(TAGGING, "en"), (MARKING, "ar")], ids=["tagging-en", "marking-ar"])
def test_the_task_page_weighs_under_60_kb_compressed_before_the_first_image(client, make_project, task, language):
    """HTML, CSS and every script module the task page loads sum to under 60 KB gzip-compressed; the marking
    page in Arabic (the heaviest: drawing code, and the scripts' translations) too."""
    project = make_project({**task, "tutorial": [{"title": "Look", "text": "Then tap."}]}, n=1)
    page = client.get(f"/p/{project['slug']}?lang={language}")
    html = page.get_data()
    assets = set(re.findall(rb'<link rel="(?:stylesheet|modulepreload)" href="([^"]+)"', html))
    assets |= set(re.findall(rb'<script type="module" src="([^"]+)"', html))
    sizes = {"page": len(gzip.compress(html))}
    todo = [url.decode() for url in assets]
    while todo:
        url = todo.pop()
        if url in sizes:
            continue
        body = client.get(url).get_data()
        assert body, url
        sizes[url] = len(gzip.compress(body))
        if url.endswith(".js"):  # modules it imports load before the page can show anything
            folder = url.rsplit("/", 1)[0]
            todo += [f"{folder}/{name}" for name in re.findall(r"from '\./([\w-]+\.js)'", body.decode())]
    assert any(url.endswith("/task.js") for url in sizes) and any(url.endswith("/i18n.js") for url in sizes)
    assert sum(sizes.values()) < BUDGET_BYTES, sizes


def test_low_data_uses_small_images_and_fetches_none_ahead(phone, make_project):
    """With Low data on, tagging shows the thumbnail and no image is fetched ahead; the choice is remembered."""
    project = make_project(TAGGING, n=3, size=(640, 480))
    page = phone(project)
    ahead_is_loaded(page)
    page.get_by_role("button", name="Low data").tap()
    assert page.get_by_role("button", name="Low data").get_attribute("aria-pressed") == "true"
    first = page.get_attribute("#unit-image", "src")
    page.get_by_role("button", name="cat").tap()
    second = wait_for_next_unit(page, first)
    assert second.endswith(".thumb.webp")
    page.wait_for_function("() => document.getElementById('status').textContent.includes('1 done')")
    page.wait_for_timeout(300)  # time enough to fetch the next unit ahead
    images = page.evaluate("() => performance.getEntriesByType('resource')"
                           ".filter(e => e.name.includes('/media/')).map(e => e.name)")
    assert len(images) == 3, images  # the first, the one fetched ahead before, and this thumbnail
    page.reload()
    wait_for_unit(page)
    assert page.get_by_role("button", name="Low data").get_attribute("aria-pressed") == "true"


def test_an_image_that_fails_to_load_is_explained_and_can_be_skipped(phone, make_project, session_maker):
    """When an image cannot be loaded the page says so and offers to skip it."""
    project = make_project(TAGGING, n=2)
    page = phone(project)
    phone.expected.append("ERR_FAILED")
    ahead_is_loaded(page)
    page.route("**/media/**", lambda route: route.abort())
    page.evaluate("() => { const img = document.getElementById('unit-image'); img.src = img.src + '?again'; }")
    page.get_by_role("alert").filter(has_text="The image could not be loaded").wait_for()
    shoot(page, "image-failed")
    page.unroute("**/media/**")
    with page.expect_response(lambda r: r.url.endswith("/skip")):
        page.get_by_role("button", name="Skip this image").tap()
    wait_for_unit(page)
    assert page.get_by_role("alert").inner_text() == ""
    assert stored(session_maker) == []


def test_a_tampered_token_keeps_the_answer_explains_and_carries_on(phone, make_project, server, session_maker):
    """A tampered cookie: the page gets a new identity, keeps and explains the answer it cannot send, goes on."""
    project = make_project(TAGGING, n=3)
    page = phone(project)
    phone.expected += ["HTTP 401", "HTTP 409", "status of 401", "status of 409"]
    page.context.add_cookies([{"name": "mt_volunteer", "value": "tampered", "url": server}])
    first = page.get_attribute("#unit-image", "src")
    page.get_by_role("button", name="cat").tap()
    wait_for_next_unit(page, first)
    page.get_by_role("status").filter(has_text="cannot take it").wait_for()
    held = json.loads(page.evaluate(f"() => localStorage.getItem('microtasks:held:{project['id']}')"))
    assert [a["payload"] for a in held] == [{"label": "cat"}]
    assert "cannot be sent" in page.locator("#queue-note").inner_text()
    shoot(page, "token-tampered")
    page.get_by_role("button", name="dog").tap()  # the new identity's answers are stored
    assert [a.payload for a in wait_for_answers(page, session_maker, 1)] == [{"label": "dog"}]
