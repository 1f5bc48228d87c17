"""schemathesis against the gateway's own OpenAPI document, served live from this process.

Positive and negative cases for every operation in `GET /openapi.json`: never a server error, only
documented statuses and content types, and every answer (the error envelope included) matches the
document.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz.live import LiveGateway
from tests.fuzz.support import ADMIN_KEY, TEAM_KEY, count_case, examples

pytestmark = [pytest.mark.slow]  # the fuzz suite: thousands of generated cases

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]  # fmt: skip


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    with LiveGateway(tmp_path_factory.mktemp("live")) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def gateway_schema(live: LiveGateway) -> Any:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    schema.config.update(base_url=live.url)
    # Same cases every run (CI); unknown query parameters are not "invalid": OpenAPI does not forbid
    # them, and the gateway ignores them as the upstream does.
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], deterministic=True, allow_extra_parameters=False
    )
    return schema


schema = schemathesis.pytest.from_fixture("gateway_schema")


@schema.parametrize()
@settings(max_examples=examples(100))
def test_gateway_conforms_to_its_openapi_document(case: Any) -> None:
    count_case()
    key = ADMIN_KEY if case.path.startswith("/admin/") else TEAM_KEY
    case.call_and_validate(
        headers={"Authorization": f"Bearer {key}", "OpenAI-Beta": "assistants=v2"}, checks=CHECKS, timeout=20
    )
