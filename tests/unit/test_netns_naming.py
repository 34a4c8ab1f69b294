"""Names and options of the netns device driver (pure)."""
from __future__ import annotations

import uuid

import pytest

from nfp.config import ConfigError
from nfp.drivers.device.netns import naming
from nfp.drivers.device.netns.keys import fingerprint
from nfp.drivers.device.netns.options import parse_options


def test_names_fit_linux_limits_and_are_deterministic():
    dev, port, net = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    names = [naming.data_link(dev, port), naming.inner_link("provider", port),
             naming.segment_bridge(net), naming.mgmt_link(65534)]
    assert all(len(n) <= 15 for n in names)
    assert naming.device_netns(dev) == naming.device_netns(dev)
    assert naming.device_netns(dev).startswith("nfp-d-")
    assert naming.data_link(dev, port) != naming.data_link(str(uuid.uuid4()), port)
    assert all(n.startswith("nfp") for n in (names[0], names[2], names[3]))


def test_management_links_are_not_mistaken_for_the_management_bridge():
    assert not "nfpmgmt0".startswith(naming.MGMT_LINK_PREFIX)


def test_options_defaults_and_errors_name_the_key():
    opts = parse_options({})
    assert opts.mgmt_cidr == "198.18.0.0/24" and opts.mgmt_bridge == "nfpmgmt0"
    with pytest.raises(ConfigError, match=r"device_drivers\.netns\.mgmt_cidr"):
        parse_options({"mgmt_cidr": "198.18.0.0/31"})
    with pytest.raises(ConfigError, match=r"device_drivers\.netns\.bogus"):
        parse_options({"bogus": 1})


def test_fingerprint_matches_openssh_format():
    # the value ssh-keygen -lf prints for this key (checked with OpenSSH 9.2)
    line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJrLYH/3lQ5hh0OO6FeLqbUMqy6U36Z/hqgT1J0yEvWA x"
    assert fingerprint(line) == "SHA256:tlQGo64Ut+LjzAJZW/WgK788c+zljERXvvs5N1HEUJg"
