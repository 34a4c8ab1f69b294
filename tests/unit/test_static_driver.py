"""The static device driver shares appliances by interface capacity."""
from nfp.drivers.device.static import StaticDeviceDriver

OPTS = {"devices": [
    {"id": "fw-a", "service_vendor": "vyos", "max_interfaces": 4, "service_types": ["firewall"]},
    {"id": "fw-b", "service_vendor": "vyos", "max_interfaces": 8},
]}


def _dev(dev_id, max_if, used):
    return {"id": dev_id, "max_interfaces": max_if, "interfaces_in_use": used}


def test_selects_fullest_device_that_fits():
    driver = StaticDeviceDriver(None, OPTS)
    data = {"service_details": {"service_type": "firewall"}, "ports": [{"id": "p1"}, {"id": "p2"}]}
    chosen = driver.select_network_function_device([_dev("fw-a", 4, 1), _dev("fw-b", 8, 0)], data)
    assert chosen["id"] == "fw-a"
    chosen = driver.select_network_function_device([_dev("fw-a", 4, 3), _dev("fw-b", 8, 0)], data)
    assert chosen["id"] == "fw-b"
    assert driver.select_network_function_device([_dev("fw-a", 4, 3), _dev("fw-b", 8, 7)], data) is None


def test_service_type_restriction_and_status():
    driver = StaticDeviceDriver(None, OPTS)
    lb = {"service_details": {"service_type": "loadbalancer"}, "ports": []}
    assert driver.select_network_function_device([_dev("fw-a", 4, 0)], lb) is None
    assert driver.get_network_function_device_status({"id": "fw-a"}) == "ACTIVE"
    assert driver.get_network_function_device_status({"id": "unknown"}) == "ERROR"
    assert driver.create_network_function_device({}) is None


def test_probe_port_reports_unreachable_device():
    driver = StaticDeviceDriver(None, {"devices": [{"id": "d", "service_vendor": "x",
                                                    "mgmt_ip_address": "127.0.0.1", "probe_port": 9}]})
    assert driver.get_network_function_device_status({"id": "d"}) == "ERROR"
