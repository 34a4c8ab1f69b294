"""The configurator in one process, for tests and for trying requests without TLS:
the real FastAPI app and security guard, its steps run by an
:class:`~nfp.testing.engine.InProcessEngine` (nothing runs until ``join()``).

    with ConfiguratorHarness(tmp_path) as h:
        h.post("create_network_function_config", body)
        h.engine.join()
        h.get_notifications()
"""
from __future__ import annotations

import uuid
from typing import Any, Optional

from nfp import config as nfp_config
from nfp.configurator.api import create_app
from nfp.configurator.security import TokenVerifier, jwt_key, mint_token
from nfp.configurator.service import CONFIGURATOR, daemon_conf
from nfp.pki import Pki
from nfp.testing.engine import InProcessEngine


def harness_conf(state_dir, **service: Any) -> nfp_config.NfpConfig:
    """A configuration for ``state_dir`` with ``configurator_service`` overrides."""
    svc = {"allowed_target_cidrs": ["198.18.0.0/15", "127.0.0.0/8"]}
    svc.update(service)
    return nfp_config.load(None, {"state_dir": str(state_dir), "configurator_service": svc}, environ={})


class ConfiguratorHarness:
    """The app behind a Starlette TestClient whose source address is ``source``."""

    def __init__(self, state_dir, source: str = "127.0.0.1", conf=None, **service: Any):
        from starlette.testclient import TestClient
        main = conf or harness_conf(state_dir, **service)
        if not Pki.from_conf(main).initialised:
            Pki.from_conf(main).init()
        self.conf = daemon_conf(main)
        self.conf.state_path.mkdir(parents=True, exist_ok=True)
        self.pki = Pki.from_conf(main)
        self.key = jwt_key(self.conf)
        self.engine = InProcessEngine(CONFIGURATOR, conf=self.conf)
        self.sessionmaker = self.engine.sessionmaker
        verifier = TokenVerifier.from_conf(self.conf, self.sessionmaker)
        self.asgi, self.app = create_app(self.conf, self.sessionmaker, self.engine.submit, verifier)
        self.client = TestClient(self.asgi, base_url="http://configurator", client=(source, 40000))

    def token(self, subject: str = "orchestrator", **overrides: Any) -> str:
        """A fresh valid token; ``overrides`` change ``mint_token``'s arguments."""
        j = self.conf.configurator_service.jwt
        args = {"audience": j.audience, "issuer": j.issuer, "ttl": 60}
        args.update(overrides)
        return mint_token(args.pop("key", self.key), subject, **args)

    def headers(self, token: Optional[str] = None, request_id: Optional[str] = None) -> dict:
        out = {"Authorization": f"Bearer {token or self.token()}"}
        if request_id:
            out["X-Request-Id"] = request_id
        return out

    def post(self, method: str, body: Any, token: Optional[str] = None,
             request_id: Optional[str] = None):
        """POST /v1/nfp/<method> with a fresh token (or ``token``)."""
        return self.client.post(f"/v1/nfp/{method}", json=body,
                                headers=self.headers(token, request_id or uuid.uuid4().hex))

    def get_notifications(self, token: Optional[str] = None) -> list:
        response = self.client.get("/v1/nfp/get_notifications", headers=self.headers(token))
        assert response.status_code == 200, response.text
        return response.json()

    def close(self) -> None:
        self.client.close()
        self.engine.close()

    def __enter__(self) -> "ConfiguratorHarness":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def firewall_body(rules: Optional[list] = None, nf_id: str = "nf-1", mgmt_ip: str = "198.18.0.10",
                  vendor: str = "memory", **context: Any) -> dict:
    """A ``create_network_function_config`` body with one firewall element."""
    ctx = {"nf_id": nf_id, "nfd_id": "dev-1", "nfd_ip": mgmt_ip, "operation": "create"}
    ctx.update(context)
    return {"info": {"service_vendor": vendor, "service_type": "firewall", "context": ctx},
            "config": [{"resource": "firewall", "resource_data": {"rules": rules if rules is not None else [
                {"name": "web", "protocol": "tcp", "destination_port": 80}]}}]}


__all__ = ["ConfiguratorHarness", "firewall_body", "harness_conf"]
