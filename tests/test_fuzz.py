"""Fuzzing the JSON API with schemathesis: requests generated from our own OpenAPI document.

Every operation of ``/api/openapi.json`` gets requests that fit its schema (positive) and
requests that do not (negative), sent in process to the real app on the real database
and Redis, authenticated as an owner (``X-API-Key``) and as a volunteer
(``X-Volunteer-Token``). Path parameters are either generated or point at a seeded
project with units, a batch, an export, a quarantined volunteer and a spare API key, so
that requests get past the 404s into the handlers. No response may be a server error,
and every response must conform to the document (status code, content type, schema).

``MICROTASKS_FUZZ_EXAMPLES`` sets the examples per operation and mode (default
:data:`DEFAULT_EXAMPLES`, which sends at least :data:`MIN_REQUESTS` requests in all; the
count is printed with ``-s``, per operation with its status codes, and recorded as the
``fuzz_requests`` property of the JUnit report). Generation is derandomized and keeps no
example database, so every run sends the same requests; Hypothesis's caches go to the
system's temporary folder, never into the repository.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from microtasks.models import Quarantine, Unit, Volunteer
from tests.conftest import MARKING, TAGGING

#: Examples per operation and generation mode; the default sends at least MIN_REQUESTS requests in all.
DEFAULT_EXAMPLES = 110
MIN_REQUESTS = 5_000
EXAMPLES = int(os.environ.get("MICROTASKS_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
#: Multipart uploads ignore form fields other than their own, as web forms do: a form with an extra field is
#: not refused, so the check that invalid data is refused does not apply to them (every other check does).
UPLOADS = {"POST /api/v1/projects/{project_id}/images", "POST /api/v1/projects/{project_id}/batches"}
UPLOAD_CHECKS = [check for check in CHECKS if check is not negative_data_rejection]
#: Operations after whose success the volunteer token no longer names a volunteer.
ENDS_THE_VOLUNTEER = {"DELETE /api/v1/volunteers/me", "POST /api/v1/volunteers/login"}
#: Far above what the fuzzer sends in a minute: the fuzz app must not answer 429 instead of reaching the handlers.
NO_LIMIT = "1000000/minute"
#: Request bodies of the API (a project's settings, batches of answers) are large and slow to generate, and
#: negative cases are drawn by filtering: checks of the generator's pace that do not apply here.
SLOW_GENERATION = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                   HealthCheck.large_base_example]


@dataclass
class Seeded:
    """What the requests act as and on (credentials, and ids that exist, by path parameter), and what they got."""

    session_maker: Any
    owner_id: int
    owner_key: str
    owner_key_id: int
    volunteer_token: str
    real: dict[str, list[Any]] = field(default_factory=dict)
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)

    def headers(self) -> dict[str, str]:
        # Identity: the werkzeug client the cases are sent with does not undo gzip, as a browser would.
        return {"X-API-Key": self.owner_key, "X-Volunteer-Token": self.volunteer_token, "Accept-Encoding": "identity"}

    def renew_key(self) -> None:
        """A new key for the owner, after a generated request revoked the one in use."""
        from microtasks.accounts import create_api_key
        from microtasks.models import Owner

        with self.session_maker() as session:
            row, self.owner_key = create_api_key(session, session.get(Owner, self.owner_id), "fuzz")
            self.owner_key_id = row.id
            session.commit()


@pytest.fixture()
def hypothesis_home():  # type: ignore[no-untyped-def]
    """Hypothesis keeps its caches (character maps, constants of our source) out of the repository.

    They are kept between runs in the system's temporary folder: building them costs seconds.
    """
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "microtasks-hypothesis")
    yield
    set_hypothesis_home_dir(None)


@pytest.fixture()
def fuzz_app(app):  # type: ignore[no-untyped-def]
    """The test app with rate limits far above the fuzzer's pace."""
    app.config.update(RATELIMIT_VOLUNTEER=NO_LIMIT, RATELIMIT_ADDRESS=NO_LIMIT)
    return app


@pytest.fixture()
def seeded(fuzz_app, client, owner, make_project, new_volunteer, run_jobs, session_maker) -> Seeded:
    """Two projects with units and a batch, an export, a volunteer with an answer, a quarantine entry, a spare key."""
    tagging = make_project(TAGGING, n=3)
    marking = make_project({**MARKING, "name": "Craters two"}, n=2)
    headers = owner["headers"]
    export = client.post(f"/api/v1/projects/{tagging['id']}/exports", headers=headers, json={}).get_json()
    run_jobs()
    spare = client.post("/api/v1/keys", headers=headers, json={"name": "spare"}).get_json()
    volunteer = new_volunteer()
    unit = client.post(f"/api/v1/projects/{tagging['id']}/next", headers=volunteer).get_json()["unit"]
    client.post(f"/api/v1/units/{unit['id']}/answers", headers=volunteer,
                json={"answer_id": "00000000-0000-4000-8000-000000000001", "payload": {"label": "cat"}})
    with session_maker() as session:
        quarantined = session.scalars(select(Volunteer)).first()
        session.add(Quarantine(project_id=tagging["id"], volunteer_id=quarantined.id, reason="fuzz"))
        unit_ids = list(session.scalars(select(Unit.id).order_by(Unit.id)))
        session.commit()
        public_id = quarantined.public_id
    batches = client.get(f"/api/v1/projects/{tagging['id']}/batches", headers=headers).get_json()
    key_id = next(k["id"] for k in client.get("/api/v1/keys", headers=headers).get_json() if k["name"] == "first key")
    return Seeded(session_maker=session_maker, owner_id=owner["id"], owner_key=owner["key"], owner_key_id=key_id,
                  volunteer_token=volunteer["X-Volunteer-Token"], real={
        "project_id": [tagging["id"], marking["id"]], "unit_id": unit_ids[:2], "batch_id": [batches[0]["id"]],
        "export_id": [export["id"]], "key_id": [spare["id"]], "volunteer": [public_id],
        "slug": [tagging["slug"], marking["slug"]]})


def negatable(operation: Any) -> bool:
    """Whether requests can break the operation's schema: a query, a body or a typed path parameter.

    Free text in the path cannot be sent wrong (any text is a string), nor can an operation without inputs.
    """
    typed_path = any(p.definition.get("schema", {}).get("type") != "string" for p in operation.path_parameters)
    return typed_path or bool(list(operation.query)) or bool(list(operation.body))


def strategy(operation: Any, mode: GenerationMode, seeded: Seeded) -> st.SearchStrategy:
    """Cases of one operation: with generated path parameters, and with each set of ids that exist."""
    names = [p.name for p in operation.path_parameters]
    strategies = [operation.as_strategy(mode)]
    for index in range(max((len(seeded.real.get(n, [])) for n in names), default=0)):
        real = {n: seeded.real[n][index % len(seeded.real[n])] for n in names if n in seeded.real}
        strategies.append(operation.as_strategy(mode, path_parameters=real))
    return st.one_of(strategies)


def fuzz(operation: Any, mode: GenerationMode, seeded: Seeded, new_volunteer: Any) -> None:
    """Send up to ``EXAMPLES`` generated requests to one operation; fail on the first not as documented.

    Hypothesis sends fewer when the operation has fewer distinct requests (one without
    parameters has one), and more while it shrinks a failure to its simplest form.
    """

    @hypothesis_settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, print_blob=False,
                         suppress_health_check=SLOW_GENERATION)
    @given(case=strategy(operation, mode, seeded))
    def run(case: Any) -> None:
        headers = seeded.headers()
        seeded.requests += 1
        response = case.call(headers=headers)
        seeded.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=UPLOAD_CHECKS if case.operation.label in UPLOADS else CHECKS,
                                   headers=headers)
        finally:
            if case.operation.label in ENDS_THE_VOLUNTEER and response.status_code < 300:
                seeded.volunteer_token = new_volunteer()["X-Volunteer-Token"]
            if case.operation.label == "DELETE /api/v1/keys/{key_id}" and response.status_code < 300 \
                    and response.json().get("id") == seeded.owner_key_id:
                seeded.renew_key()

    run()


def test_the_api_answers_generated_requests_as_documented(fuzz_app, seeded, new_volunteer, hypothesis_home,
                                                          record_property):
    """No generated request, valid or not, gets a server error or a response other than the document says."""
    # The requests carry real credentials (``Seeded.headers``): none are generated, or removed by negative cases.
    config = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", fuzz_app, config=config)
    failures: list[str] = []
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if negatable(operation) else \
            (GenerationMode.POSITIVE,)
        for mode in modes:
            before, began = seeded.requests, time.monotonic()
            seeded.statuses.clear()
            try:
                fuzz(operation, mode, seeded, new_volunteer)
            except (Exception, FailureGroup) as error:  # every operation's failure is collected, then all reported
                failures.append(f"{operation.label} ({mode.value}):\n{error}")
            print(f"{operation.label} {mode.value}: {seeded.requests - before} requests, "
                  f"{time.monotonic() - began:.1f} s, statuses {dict(sorted(seeded.statuses.items()))}")
    elapsed = time.monotonic() - started
    record_property("fuzz_requests", seeded.requests)
    print(f"fuzz: {seeded.requests} requests in {elapsed:.1f} s")
    assert not failures, "\n\n".join(failures)
    if EXAMPLES >= DEFAULT_EXAMPLES:
        assert seeded.requests >= MIN_REQUESTS, f"only {seeded.requests} requests were generated"
