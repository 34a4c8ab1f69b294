"""The ``netns`` device driver: network namespaces as real local service devices."""
from nfp.drivers.device.netns.driver import NetnsDeviceDriver

__all__ = ["NetnsDeviceDriver"]
