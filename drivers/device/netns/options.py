"""Options of the netns device driver: the ``device_drivers.netns`` config section."""
from __future__ import annotations

import ipaddress
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nfp.config import ConfigError

SECTION = "device_drivers.netns"


class NetnsOptions(BaseModel):
    """``device_drivers.netns``; every key is optional."""

    model_config = ConfigDict(extra="forbid")

    #: host bridge of the management network; nfp's own address sits on it
    mgmt_bridge: str = Field(default="nfpmgmt0", pattern=r"^nfp[a-z0-9]{1,12}$")
    #: management network; the host takes the first address, devices the rest
    mgmt_cidr: str = "198.18.0.0/24"
    ssh_port: int = Field(default=22, ge=1, le=65535)
    ssh_user: str = "root"
    #: data interfaces one device accepts (the management interface counts as one)
    max_interfaces: int = Field(default=8, ge=2, le=64)
    #: let several network functions share one device
    shared: bool = False
    #: seconds a new device's sshd gets to answer
    start_timeout: float = Field(default=10.0, gt=0)
    #: where device files live; default ``<state_dir>/netns``
    state_dir: Optional[str] = None

    @field_validator("mgmt_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            net = ipaddress.IPv4Network(value, strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 CIDR") from None
        if net.prefixlen > 29:
            raise ValueError(f"{value!r} is too small; use /29 or larger")
        return str(net)

    @property
    def mgmt_network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.mgmt_cidr)


def parse_options(options: Optional[dict]) -> NetnsOptions:
    """Validate the section; the error names ``device_drivers.netns.<key>``."""
    try:
        return NetnsOptions.model_validate(options or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in (SECTION, *err["loc"]))
        raise ConfigError(f"{key}: {err['msg']}") from None
