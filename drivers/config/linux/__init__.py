"""The ``linux`` config driver: nftables, HAProxy and kernel routes over SSH."""
from nfp.drivers.config.linux.driver import LinuxConfigDriver

__all__ = ["LinuxConfigDriver"]
