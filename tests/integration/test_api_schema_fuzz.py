"""schemathesis against the API's own OpenAPI document (issue 21): no server errors, and
every response conforms to the document (its schema, status code and content type).

The app runs in process (ASGI) with a real API key on the test's own PostgreSQL
database, local storage, the test-tone engine and no broker (a recording dispatcher).
schemathesis' own engine runs, as its CLI would: the document's examples, its coverage
cases (boundaries and invalid values), fuzzing of each operation, then the stateful
phase, which follows the document's links from POST /v1/jobs, so jobs are really created
and then read, cancelled, listed and restored. The example counts are small so the run
stays well inside 90 seconds on a busy two-core machine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.engine import Status
from schemathesis.engine import events as engine_events

from tests.integration.test_api_hostile_input import LocalApi, local_api
from tests.support.asr import asr_model_dir

pytestmark = pytest.mark.integration

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "unsupported_method",  # a 405 for methods the document does not list, with `Allow`
]
PHASES = ["examples", "coverage", "fuzzing", "stateful"]
EXAMPLES_PER_OPERATION = 60


@pytest.fixture
def fuzzed_api(pg_migrated_url: str, tmp_path: Path) -> Iterator[LocalApi]:
    # With a recogniser folder the server takes `qa: true`, so fewer of the generated job
    # bodies are refused and the stateful phase creates jobs to follow its links from.
    made = local_api(
        pg_migrated_url,
        tmp_path / "data",
        api_rate_limit=1_000_000,
        asr_model_dir=asr_model_dir(),
    )
    yield made
    made.client.close()


Answers = Counter[tuple[str, str, int]]  # (phase, operation, status) -> how many


def run_schemathesis(api: LocalApi) -> tuple[list[str], Answers, set[str]]:
    """Run every phase; the failures found (one line each), the answers seen per
    phase, operation and status, and the phases that ran."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    schema.config.update(headers=api.auth)
    schema.config.checks.update(included_check_names=CHECKS)
    schema.config.phases.update(phases=PHASES)
    # Derandomized: the same code gets the same cases, so CI is repeatable.
    schema.config.generation.update(
        max_examples=EXAMPLES_PER_OPERATION, database="none", deterministic=True
    )
    failures: list[str] = []
    answers: Answers = Counter()
    phases: set[str] = set()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, engine_events.PhaseFinished):
            phases.add(f"{event.phase.name.value}:{event.status}")
        elif isinstance(event, engine_events.ScenarioFinished):
            answers.update(_answers(event))
            if event.status in (Status.FAILURE, Status.ERROR):
                failures.extend(_failures(event))
        elif isinstance(event, engine_events.NonFatalError):
            failures.append(f"{event.label}: error: {event.info}")
        elif isinstance(event, engine_events.FatalError):
            failures.append(f"fatal: {event.exception!r}")
    return failures, answers, phases


def _answers(event: Any) -> Iterator[tuple[str, str, int]]:
    for case_id, interaction in event.recorder.interactions.items():
        response = interaction.response
        if response is not None:
            operation = event.recorder.cases[case_id].value.operation.label
            yield (event.phase.value, operation, response.status_code)


def _failures(event: Any) -> Iterator[str]:
    for checks in event.recorder.checks.values():
        for check in checks:
            if check.status is Status.FAILURE and check.failure_info is not None:
                failure = check.failure_info.failure
                yield f"{event.label}: {check.name}: {failure.title}: {failure.message}"


def test_schemathesis_finds_nothing(fuzzed_api: LocalApi) -> None:
    failures, answers, phases = run_schemathesis(fuzzed_api)
    assert sorted(set(failures)) == []
    assert {phase.split(":")[0] for phase in phases} >= set(PHASES), phases
    stateful = {
        (op, status): n for (phase, op, status), n in answers.items() if phase == "stateful"
    }
    # The stateful phase really created jobs, and the links then reached them.
    assert stateful.get(("POST /v1/jobs", 201)), stateful
    assert stateful.get(("GET /v1/jobs/{job_id}", 200)), stateful
    assert fuzzed_api.jobs() > 0 and fuzzed_api.dispatcher.published
    # Invalid input was sent too, and refused as documented.
    assert sum(n for (_, op, status), n in answers.items() if status == 422) > 0, answers
