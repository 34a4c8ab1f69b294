"""Schemathesis against the configurator's published OpenAPI document: no 5xx and no
response that violates the document, with valid tokens so requests reach the API.
Bounded: a fixed number of examples per operation, no deadline on wall time.

Excluded: ``positive_data_acceptance``. Some rules cross fields in ways JSON Schema
does not express (the target's management IP comes from ``info.context.nfd_ip`` or
from an element's ``mgmt_ip``; NF methods need ``info.context.nf_id``; inline
secrets are refused); such requests get the documented 400 naming the field."""
from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from schemathesis.checks import positive_data_acceptance
from hypothesis import HealthCheck, settings

from nfp.configurator.daemon import openapi
from nfp.configurator.security import mint_token
from nfp.testing.configurator import ConfiguratorHarness

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
schema = schemathesis.openapi.from_dict(openapi())


#: the token key exists before collection: schemathesis asks for a token while collecting
KEY = secrets.token_urlsafe(48).encode()
KEY_FILE = Path(tempfile.mkdtemp(prefix="nfp-st-")) / "jwt.key"
KEY_FILE.write_bytes(KEY)


@schema.auth(refresh_interval=None)
class FreshToken:
    """A new single-use token for every request (jti replay protection); schemathesis
    also sends requests without it and checks that they get 401."""

    def get(self, case, context):
        return mint_token(KEY, "schemathesis")

    def set(self, case, data, context):
        case.headers = dict(case.headers or {}, Authorization=f"Bearer {data}")


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    with ConfiguratorHarness(tmp_path_factory.mktemp("schemathesis"), jwt={"key_file": str(KEY_FILE)}) as h:
        TARGET[:] = [h.asgi]
        yield h
        TARGET.clear()
    shutil.rmtree(KEY_FILE.parent, ignore_errors=True)


#: the configurator app under test, set by the fixture
TARGET: list = []


async def from_loopback(scope, receive, send):
    """The app under test, called from 127.0.0.1 (schemathesis' ASGI client says "testclient")."""
    if scope["type"] == "http":
        scope = dict(scope, client=("127.0.0.1", 40000))
    await TARGET[0](scope, receive, send)


schema.app = from_loopback  # every request, the checks' own included, goes to the ASGI app


@schema.parametrize()
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_error_and_no_schema_violation(case, harness):
    transport = {"base_url": "http://configurator"}
    response = case.call(**transport)
    assert response.status_code < 500, response.text
    case.validate_response(response, excluded_checks=[positive_data_acceptance],
                           transport_kwargs=transport)
    harness.engine.run_until_idle()
