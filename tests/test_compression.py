"""Text responses are gzipped for clients that accept it (issue #7: the page weight on slow networks)."""

from __future__ import annotations

import gzip
import json

import pytest

GZIP = {"Accept-Encoding": "gzip, deflate, br"}


@pytest.mark.parametrize("path", ["/static/js/task.js", "/static/css/app.css", "/", "/owner/login"])
def test_text_is_gzipped_when_the_client_accepts_it(client, path: str):
    """Scripts, style sheets and pages come gzipped, with the same bytes inside, and vary on Accept-Encoding."""
    plain = client.get(path).get_data()
    reply = client.get(path, headers=GZIP)
    assert reply.status_code == 200
    assert reply.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in reply.headers["Vary"]
    assert int(reply.headers["Content-Length"]) == len(reply.get_data()) < len(plain)
    assert gzip.decompress(reply.get_data()) == plain


def test_nothing_is_gzipped_for_a_client_that_does_not_ask(client):
    """Without Accept-Encoding (or with identity) the bytes are sent as they are."""
    for headers in ({}, {"Accept-Encoding": "identity"}):
        reply = client.get("/static/js/task.js", headers=headers)
        assert "Content-Encoding" not in reply.headers
        assert reply.get_data().startswith(b"//")


def test_a_gzipped_static_file_is_still_revalidated_with_304(client):
    """The compressed file's ETag is weak, and If-None-Match with it answers 304 Not Modified."""
    etag = client.get("/static/css/app.css", headers=GZIP).headers["ETag"]
    assert etag.startswith('W/"')
    assert client.get("/static/css/app.css", headers={**GZIP, "If-None-Match": etag}).status_code == 304


def test_images_and_streamed_exports_are_sent_as_they_are(client, make_project, owner, new_volunteer):
    """Images are compressed already, and a streamed export is never held back to be compressed."""
    project = make_project(n=1)
    unit = client.post(f"/api/v1/projects/{project['id']}/next", headers=new_volunteer()).get_json()["unit"]
    image = client.get(unit["media_url"], headers=GZIP)
    assert image.status_code == 200 and "Content-Encoding" not in image.headers
    export = client.get(f"/api/v1/projects/{project['id']}/export?kind=answers&format=json",
                        headers={**owner["headers"], **GZIP})
    assert export.status_code == 200 and "Content-Encoding" not in export.headers
    assert json.loads(export.get_data()) == []


def test_small_json_replies_are_not_worth_compressing(client):
    """A reply of a few bytes goes as it is: gzip's header would make it bigger."""
    reply = client.get("/api/v1/health", headers=GZIP)
    assert reply.status_code == 200 and "Content-Encoding" not in reply.headers
