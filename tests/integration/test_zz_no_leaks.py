"""Runs last (file order): nothing nfp created on this machine may outlive the suite."""
from __future__ import annotations


import pytest

from nfp.drivers.device.netns import iproute, naming

pytestmark = pytest.mark.integration


def test_no_namespace_link_or_process_created_by_nfp_remains(netns_required):
    leftovers = {
        "namespaces": iproute.list_netns(naming.NETNS_PREFIX),
        "links": iproute.list_links(naming.LINK_PREFIX),
        # sshd and haproxy of netns devices run with config files in the device directory
        "processes": iproute.find_pids(f"/netns/{naming.DEVICE_NETNS_PREFIX}"),
    }
    assert leftovers == {"namespaces": [], "links": [], "processes": []}
