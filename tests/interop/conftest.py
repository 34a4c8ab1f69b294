"""Fixtures for tests against a real RabbitMQ with the real oslo.messaging.

Outside CI a missing broker skips these tests; with ``CI=true`` it fails them.
"""
from __future__ import annotations

import os
import socket
import warnings
from urllib.parse import urlsplit

import pytest

#: override with NFP_TEST_RABBIT_URL
DEFAULT_RABBIT_URL = "rabbit://guest:guest@127.0.0.1:5672/"


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def rabbit_url() -> str:
    url = os.environ.get("NFP_TEST_RABBIT_URL", DEFAULT_RABBIT_URL)
    if not _reachable(url):
        reason = f"RabbitMQ is not reachable at {urlsplit(url).hostname}:{urlsplit(url).port or 5672}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: interop tests must run)")
        pytest.skip(reason)
    return url


@pytest.fixture(scope="session")
def oslo():
    """oslo_messaging with a private ConfigOpts that has every option group the
    18.3 client reads (tracing and metrics register only on the global CONF)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        om = pytest.importorskip("oslo_messaging")
        from oslo_config import cfg
        from oslo_messaging._metrics import client as metrics
        from oslo_messaging._tracing import client as tracing
    conf = cfg.ConfigOpts()
    conf.register_opts(tracing.oslo_messaging_tracing, group="oslo_messaging_tracing")
    conf.register_opts(metrics.oslo_messaging_metrics, group="oslo_messaging_metrics")
    return om, conf
