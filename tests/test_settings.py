"""Project settings through the API and the settings page; previewing and publishing."""

from __future__ import annotations

import io

from sqlalchemy import select

from microtasks.models import Project, Unit, UnitState
from tests.conftest import TAGGING, answer, png_bytes, sign_in

GUIDE = [{"label": "cat", "text": "Whiskers and pointed ears."}, {"label": "dog", "text": "A snout."}]


def serve(client, project, headers):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/projects/{project['id']}/next", headers=headers)


def test_settings_change_through_the_api(client, owner, make_project):
    """PATCH stores the field guide, tutorial, languages and Arabic texts, and returns them."""
    project = make_project(TAGGING, n=1)
    changes = {"field_guide": GUIDE, "tutorial": [{"title": "Look", "text": "Then tap a label."}],
               "languages": ["en", "ar"], "translations": {"ar": {"name": "قطط وكلاب", "labels": {"cat": "قطة"}}},
               "topics": ["animals"], "redundancy": 5}
    reply = client.patch(f"/api/v1/projects/{project['id']}", json=changes, headers=owner["headers"])
    assert reply.status_code == 200, reply.get_json()
    got = client.get(f"/api/v1/projects/{project['id']}", headers=owner["headers"]).get_json()
    assert {k: got[k] for k in ("languages", "translations", "topics", "redundancy")} == {
        "languages": ["en", "ar"], "translations": {"ar": {"name": "قطط وكلاب", "labels": {"cat": "قطة"}}},
        "topics": ["animals"], "redundancy": 5}
    assert [entry["label"] for entry in got["field_guide"]] == ["cat", "dog"]


def test_labels_cannot_change_once_there_are_answers(client, owner, make_project, new_volunteer):
    """Changing the labels of a project with answers is a 409 naming the field."""
    project = make_project(TAGGING, n=1)
    headers = new_volunteer()
    answer(client, headers, serve(client, project, headers).get_json()["unit"]["id"], {"label": "cat"})
    reply = client.patch(f"/api/v1/projects/{project['id']}", json={"labels": ["cat", "dog"]},
                         headers=owner["headers"])
    assert reply.status_code == 409 and "labels" in reply.get_json()["errors"]["json"]


def test_a_field_guide_for_an_unknown_label_is_a_422(client, owner, make_project):
    """The field guide may only describe the project's labels."""
    project = make_project(TAGGING, n=1)
    reply = client.patch(f"/api/v1/projects/{project['id']}", json={"field_guide": [{"label": "horse"}]},
                         headers=owner["headers"])
    assert reply.status_code == 422 and "horse" in reply.get_json()["message"]


def test_texts_in_a_language_the_project_lacks_are_a_422(client, owner, make_project):
    """Translations must be in one of the project's languages."""
    project = make_project(TAGGING, n=1)
    reply = client.patch(f"/api/v1/projects/{project['id']}", json={"translations": {"fr": {"name": "Chats"}}},
                         headers=owner["headers"])
    assert reply.status_code == 422 and "translations" in reply.get_json()["errors"]["json"]


def test_volunteers_are_not_served_before_the_project_is_published(client, owner, make_project, new_volunteer):
    """An unpublished project answers 409 with the reason; once published it serves units."""
    project = make_project({**TAGGING, "published": False}, n=1)
    headers = new_volunteer()
    refused = serve(client, project, headers)
    assert refused.status_code == 409 and "not open to volunteers" in refused.get_json()["message"]
    client.patch(f"/api/v1/projects/{project['id']}", json={"published": True}, headers=owner["headers"])
    assert serve(client, project, headers).get_json()["unit"] is not None


def test_unpublished_projects_are_not_listed_for_volunteers(client, make_project):
    """The volunteers' project list and task page leave out unpublished projects."""
    project = make_project({**TAGGING, "name": "Hidden work", "published": False}, n=1)
    assert "Hidden work" not in client.get("/").get_data(as_text=True)
    assert client.get(f"/p/{project['slug']}").status_code == 404


def test_a_lower_redundancy_retires_units_that_have_enough(client, owner, make_project, new_volunteer, session):
    """Dropping the redundancy to 1 retires a unit that already has one answer."""
    project = make_project(TAGGING, n=2)
    headers = new_volunteer()
    answer(client, headers, serve(client, project, headers).get_json()["unit"]["id"], {"label": "cat"})
    client.patch(f"/api/v1/projects/{project['id']}", json={"redundancy": 1}, headers=owner["headers"])
    states = sorted(state.value for state in session.scalars(select(Unit.state)))
    assert states == ["open", "retired"]
    assert serve(client, project, new_volunteer()).get_json()["unit"] is not None  # the open one


def test_the_settings_page_saves_the_form(client, owner, make_project, session):
    """The settings form saves texts, labels' help with an example image, and tutorial steps."""
    project = make_project(TAGGING, n=1)
    token = sign_in(client, owner)
    form = {"csrf_token": token, "name": "Pets", "description": "", "instructions": "Tap one.",
            "labels": "cat\ndog\nbird", "task_type": "tagging", "redundancy": "4", "max_redundancy": "8",
            "strategy": "breadth_first", "lease_seconds": "300", "gold_warmup_rate": "0.4", "gold_warmup": "20",
            "gold_rate": "0.1", "languages": "en, ar", "topics": "animals, pets", "published": "1",
            "guide-0-label": "cat", "guide-0-text": "Whiskers.", "guide-0-upload": (io.BytesIO(png_bytes()), "cat.png"),
            "step-0-title": "Look closely", "step-0-text": "Then tap.",
            "tr-ar-name": "حيوانات", "tr-ar-labels": "cat = قطة\ndog = كلب"}
    reply = client.post(f"/owner/projects/{project['id']}/settings", data=form, content_type="multipart/form-data")
    assert reply.status_code == 302, reply.get_data(as_text=True)
    saved = session.get(Project, project["id"])
    assert (saved.name, saved.redundancy, saved.strategy.value, saved.topics) == ("Pets", 4, "breadth_first",
                                                                                  ["animals", "pets"])
    assert saved.field_guide[0]["text"] == "Whiskers." and saved.field_guide[0]["image"]
    assert saved.tutorial == [{"title": "Look closely", "text": "Then tap.", "image": None}]
    assert saved.translations == {"ar": {"name": "حيوانات", "labels": {"cat": "قطة", "dog": "كلب"}}}


def test_the_settings_page_shows_what_is_wrong(client, owner, make_project):
    """A form that breaks a rule is shown again with the reason, and nothing is saved."""
    project = make_project(TAGGING, n=1)
    token = sign_in(client, owner)
    reply = client.post(f"/owner/projects/{project['id']}/settings", data={
        "csrf_token": token, "name": "Pets", "labels": "cat", "task_type": "tagging", "redundancy": "3",
        "languages": "en"})
    assert reply.status_code == 422 and "at least two labels" in reply.get_data(as_text=True)
    assert client.get(f"/api/v1/projects/{project['id']}", headers=owner["headers"]).get_json()["name"] == \
        TAGGING["name"]


def test_a_new_project_is_made_on_the_page_and_previewed_before_publishing(client, owner, make_project):
    """The new-project form makes an unpublished project whose page offers the preview and Publish."""
    token = sign_in(client, owner)
    reply = client.post("/owner/projects/new", data={
        "csrf_token": token, "name": "Galaxies", "task_type": "tagging", "labels": "spiral\nelliptical",
        "redundancy": "3", "languages": "en", "strategy": "depth_first"})
    assert reply.status_code == 302, reply.get_data(as_text=True)
    page = client.get(reply.headers["Location"]).get_data(as_text=True)
    assert "Preview, then publish" in page and "Publish: let volunteers start" in page


def test_publishing_from_the_project_page(client, owner, make_project, new_volunteer):
    """The Publish button opens the project to volunteers."""
    project = make_project({**TAGGING, "published": False}, n=1)
    token = sign_in(client, owner)
    client.post(f"/owner/projects/{project['id']}/publish", data={"csrf_token": token, "published": "1"})
    assert serve(client, project, new_volunteer()).get_json()["unit"] is not None


def test_serving_follows_a_new_strategy_at_once(client, owner, make_project, new_volunteer, session):
    """After switching to breadth-first, a second volunteer is served the untouched unit first."""
    project = make_project({**TAGGING, "redundancy": 3}, n=2)
    first = new_volunteer()
    answered = serve(client, project, first).get_json()["unit"]["id"]
    answer(client, first, answered, {"label": "cat"})
    client.patch(f"/api/v1/projects/{project['id']}", json={"strategy": "breadth_first"}, headers=owner["headers"])
    assert serve(client, project, new_volunteer()).get_json()["unit"]["id"] != answered
    assert session.scalars(select(Unit.state)).all() == [UnitState.open, UnitState.open]


def test_an_example_image_is_stored_for_the_field_guide(client, owner, make_project):
    """POST /images stores a checked image whose name the field guide then accepts."""
    project = make_project(TAGGING, n=1)
    stored = client.post(f"/api/v1/projects/{project['id']}/images", headers=owner["headers"],
                         data={"file": (io.BytesIO(png_bytes(300, 200)), "cat.png")},
                         content_type="multipart/form-data")
    assert stored.status_code == 201, stored.get_json()
    assert client.get(stored.get_json()["url"]).status_code == 200
    reply = client.patch(f"/api/v1/projects/{project['id']}", headers=owner["headers"],
                         json={"field_guide": [{"label": "cat", "text": "Whiskers.", "image": stored.get_json()["media"]}]})
    assert reply.status_code == 200 and reply.get_json()["field_guide"][0]["image"] == stored.get_json()["media"]


def test_an_example_that_is_not_an_image_is_a_422(client, owner, make_project):
    """An HTML file sent as an example image is refused with the reason."""
    project = make_project(TAGGING, n=1)
    reply = client.post(f"/api/v1/projects/{project['id']}/images", headers=owner["headers"],
                        data={"file": (io.BytesIO(b"<html><script>alert(1)</script></html>"), "cat.jpg")},
                        content_type="multipart/form-data")
    assert reply.status_code == 422 and "cat.jpg" in reply.get_json()["message"]
