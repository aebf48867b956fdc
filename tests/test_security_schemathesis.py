"""Schemathesis against the app's OpenAPI spec, as a logged-in participant: no 5xx, no schema violations.

Every operation of ``/api/v1/openapi.json`` gets generated requests (bounded, ``derandomize=True`` so a
CI run repeats a local one), with participant A's bearer token: once with generated path parameters
(someone else's or nobody's EAN and invoice number: 404) and once with A's own (the real data paths).
Two properties, two tests:

- no server error, also for requests that break the schema (negative mode);
- every response conforms to the spec: documented status code, content type, headers and body schema.

The ``positive_data_acceptance`` check is left out on purpose: a request the JSON schema allows may
still be refused for a business reason the schema cannot express (a day beyond the forecast horizon,
more than 93 days of readings), and the API answers those with a documented 422.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    load_all_checks,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import Failure, FailureGroup

from kwartier.store import open_store
from kwartier.web.app import create_app
from test_web_api import build_world, token_of

pytestmark = pytest.mark.slow  # ~10 s on an idle 2-core machine: two passes over every operation
EXAMPLES = 15  # per operation and generation mode
CONFORMANCE = [status_code_conformance, content_type_conformance, response_headers_conformance,
               response_schema_conformance]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """The app over a billed two-household world, its loaded schema, A's token and A's path values."""
    folder = tmp_path_factory.mktemp("schemathesis")
    engine = open_store(f"sqlite:///{folder / 'k.db'}")
    world = build_world(engine, folder)
    app = create_app(engine, secret=b"schemathesis-secret")
    load_all_checks()
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    auth = token_of(TestClient(app), "user0")
    own = {"ean": world.eans[0], "number": world.invoices["p0"][0]}
    yield schema, auth, own
    engine.dispose()


def _operations(schema):  # type: ignore[no-untyped-def]
    ops = [result.ok() for result in schema.get_all_operations()]
    assert len(ops) >= 9, [f"{o.method} {o.path}" for o in ops]
    return ops


def _first_lines(exc: BaseException) -> str:
    text = str(exc).strip()
    return " | ".join(line.strip() for line in text.splitlines()[:12] if line.strip())[:900]


def run_operation(op, strategy, auth: dict[str, str], checks: list, excluded: list) -> tuple[Counter, list[str]]:  # type: ignore[no-untyped-def]
    """Generated cases of one operation against the app; the status codes seen and the distinct failures."""
    seen: Counter[int] = Counter()
    failures: dict[str, str] = {}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case) -> None:  # type: ignore[no-untyped-def]
        try:
            response = case.call(headers=auth)
        except Exception as exc:  # the app raised: the ASGI transport passes a server error through
            key = f"{op.method.upper()} {op.path}: server error {type(exc).__name__}"
            failures.setdefault(key, f"{key}: {exc} for {case.path_parameters} {case.query}")
            return
        seen[response.status_code] += 1
        try:
            case.validate_response(response, checks=checks, excluded_checks=excluded)
        except (Failure, FailureGroup) as exc:  # the checks that failed: one line per operation, status and kind
            kinds = ", ".join(sorted(set(re.findall(r"ST\d+ [A-Za-z ]+", str(exc))))) or type(exc).__name__
            key = f"{op.method.upper()} {op.path} [{response.status_code}] {kinds}"
            failures.setdefault(key, f"{key}; e.g. {case.path_parameters or ''} {case.query or ''}: "
                                     f"{_first_lines(exc)}")

    with contextlib.suppress(Unsatisfiable):  # nothing to generate in a mode (no parameters: no negative data)
        run()
    return seen, list(failures.values())


def _strategies(op, own: dict[str, str], modes: list[GenerationMode]):  # type: ignore[no-untyped-def]
    names = {p.name for p in op.path_parameters} if op.path_parameters else set()
    for mode in modes:
        yield op.as_strategy(generation_mode=mode)
        if names:
            yield op.as_strategy(generation_mode=mode, path_parameters={k: own[k] for k in names if k in own})


def test_no_server_error_for_any_generated_request(api):
    schema, auth, own = api
    failures: list[str] = []
    started = time.monotonic()
    for op in _operations(schema):
        for strategy in _strategies(op, own, [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]):
            _, found = run_operation(op, strategy, auth, [not_a_server_error], [])
            failures += found
    assert not failures, "\n".join(failures)
    assert time.monotonic() - started < 120


def test_every_response_conforms_to_the_spec(api):
    schema, auth, own = api
    failures: list[str] = []
    statuses: dict[str, Counter] = {}
    for op in _operations(schema):
        for strategy in _strategies(op, own, [GenerationMode.POSITIVE]):
            seen, found = run_operation(op, strategy, auth, CONFORMANCE, [])
            statuses[f"{op.method.upper()} {op.path}"] = statuses.get(f"{op.method.upper()} {op.path}",
                                                                      Counter()) + seen
            failures += found
    assert not failures, "\n".join(failures)
    # the generated requests reached the data, not only the error paths
    assert statuses["GET /api/v1/invoices/{number}"][200] > 0 and statuses["GET /api/v1/me"][200] > 0


@pytest.mark.parametrize(("path", "params"), [
    ("/api/v1/prices", {"day": "0001-01-01"}),  # OverflowError in the local-day bounds
    ("/api/v1/prices", {"day": "9999-12-31"}),  # OverflowError past the last day
    ("/api/v1/prices", {"day": "1025-03-20"}),  # local mean time (+00:19:32): off the quarter-hour grid
    ("/api/v1/prices/explain", {"at": "0001-01-01T00:00:00Z"}),
    ("/api/v1/prices/explain", {"at": "9999-12-31T23:59:00Z"}),
    ("/api/v1/connections/{ean}/intervals", {"from": "0001-01-01", "to": "0001-01-05"}),
])
def test_days_far_in_the_past_or_future_are_422_not_500(api, path, params):
    """What schemathesis found, pinned: a schema-valid date outside any tariff's life is a 422."""
    from fastapi.testclient import TestClient

    schema, auth, own = api
    client = TestClient(schema.app, raise_server_exceptions=False)
    r = client.get(path.replace("{ean}", own["ean"]), params=params, headers=auth)
    assert r.status_code == 422, (r.status_code, r.text[:200])
