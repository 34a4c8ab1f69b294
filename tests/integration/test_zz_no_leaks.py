"""Runs last (file order): nothing nfp created on this machine may outlive the suite."""
from __future__ import annotations

import os

import pytest

from nfp.drivers.device.netns import iproute, naming
from nfp.testing.topology import unavailable_reason

pytestmark = pytest.mark.integration


def test_no_namespace_link_or_process_created_by_nfp_remains():
    reason = unavailable_reason()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: netns tests must run)")
        pytest.skip(reason)
    leftovers = {
        "namespaces": iproute.list_netns(naming.NETNS_PREFIX),
        "links": iproute.list_links(naming.LINK_PREFIX),
        # sshd and haproxy of netns devices run with config files in the device directory
        "processes": iproute.find_pids(f"/netns/{naming.DEVICE_NETNS_PREFIX}"),
    }
    assert leftovers == {"namespaces": [], "links": [], "processes": []}
