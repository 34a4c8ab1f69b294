"""Wiring a running simulator into nfp: the device row, the static inventory
entry and the credentials secret it needs. Shared by tests, demos and users
trying a dictionary without hardware."""
from __future__ import annotations

import contextlib
from typing import Any

from nfp.drivers.config.base import DeviceTarget


def credentials_for(sim: Any) -> dict[str, str]:
    """The credentials secret (a mapping) that logs into ``sim``."""
    if sim.vendor == "vyos":
        return {"username": sim.username, "password": sim.password}
    return {"api_key": sim.api_key}


def device_target(sim: Any, device_id: str = "dev-1", credentials_ref: str = "dev-1-credentials",
                  **extra: Any) -> DeviceTarget:
    """A DeviceTarget pointing at ``sim`` (TLS trusted through its CA file, SSH key pinned)."""
    facts = dict(sim.connection_facts())
    facts.update(extra)
    return DeviceTarget(device_id, sim.host, sim.vendor, credentials_ref, facts)


def static_inventory_entry(sim: Any, device_id: str = "dev-1", credentials_ref: str = "dev-1-credentials",
                           service_types: tuple = ("firewall",), **extra: Any) -> dict:
    """An item of ``device_drivers.static.devices`` for ``sim``."""
    facts = dict(sim.connection_facts())
    facts.update(extra)
    return {"id": device_id, "name": f"{sim.vendor}-sim", "mgmt_ip_address": sim.host,
            "service_vendor": sim.vendor, "service_types": list(service_types), "max_interfaces": 8,
            "credentials_ref": credentials_ref, "extra": facts}


@contextlib.contextmanager
def dictionary_driver(state_dir, credentials: dict, credentials_ref: str = "dev-1-credentials",
                      **options):
    """A dictionary config driver on a fresh embedded database whose secret store
    holds ``credentials`` under ``credentials_ref``; closed on exit."""
    from nfp.config import NfpConfig
    from nfp.db import all_models
    from nfp.db.engine import make_engine, make_sessionmaker
    from nfp.drivers.config.dictionary.driver import DictionaryConfigDriver
    from nfp.secrets import SecretStore, load_key
    conf = NfpConfig(state_dir=str(state_dir))
    engine = make_engine(conf.database_url)
    all_models().create_all(engine)
    SecretStore(make_sessionmaker(engine), load_key(conf)).put(credentials_ref, credentials)
    driver = DictionaryConfigDriver(conf, options)
    try:
        yield driver
    finally:
        driver.close()
        engine.dispose()


def apply_to(driver, sim: Any, operation: str, resource: str, data: dict, nf_id: str = "nf-1",
             service_type: str = "firewall", **target):
    """Apply one resource to the simulator ``sim`` through ``driver``."""
    from nfp.drivers.config.base import ConfigRequest
    return driver.apply(ConfigRequest(operation, service_type, resource, data,
                                      device_target(sim, **target), nf_id=nf_id))


@contextlib.contextmanager
def orchestrator_for(sim: Any, state_dir, **config):
    """A running nfp daemon (:class:`nfp.testing.harness.Harness`) whose static
    inventory holds ``sim`` and whose secret store holds its credentials.
    Yields ``(harness, engine)``; ``engine`` reads the daemon's database."""
    from nfp.db.engine import make_engine, make_sessionmaker
    from nfp.secrets import SecretStore, load_key
    from nfp.testing.harness import Harness
    settings = {"device_drivers": {"static": {"devices": [static_inventory_entry(sim)]}}, **config}
    with Harness(state_dir, config=settings, workers=2) as harness:
        engine = make_engine(harness.conf.database_url)
        SecretStore(make_sessionmaker(engine), load_key(harness.conf)).put(
            "dev-1-credentials", credentials_for(sim))
        try:
            yield harness, engine
        finally:
            engine.dispose()


def firewall_nf(vendor: str, firewall: dict, port_forwarding: dict) -> dict:
    """A ``create_network_function`` body with firewall and port-forwarding rules."""
    return {"name": "fw1", "tenant_id": "t1",
            "service_profile": {"id": "p1", "service_type": "firewall",
                                "service_flavor": f"service_vendor={vendor},device_type=static"},
            "service_config": {"config": [
                {"resource": "firewall", "resource_data": firewall},
                {"resource": "port_forwarding", "resource_data": port_forwarding}]}}


def secret_leaks(secret: str, logs: str, engine) -> list[str]:
    """Where ``secret`` appears: log lines, and tables (every column of every row)."""
    from sqlalchemy import inspect, text
    found = [line for line in logs.splitlines() if secret in line]
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                if secret in repr(tuple(row)):
                    found.append(f"table {table}")
    return found
