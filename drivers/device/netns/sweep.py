"""The start-up sweep: remove what a crashed nfp left behind, and only what it owns.

Ownership is the device working directory under this instance's state
directory. A device is an orphan when no ``network_function_devices`` row
names it, unless its creator process still runs and made it moments ago (the
row may not be committed yet). Without a database answer only half-made
devices of dead creators are removed. Then processes still running from a
removed directory are killed and bridges with nothing attached are deleted.
"""
from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Optional

from nfp.drivers.device.netns import iproute, naming
from nfp.drivers.device.netns.records import DeviceRecord

if TYPE_CHECKING:
    from nfp.drivers.device.netns.driver import NetnsDeviceDriver

LOG = logging.getLogger(__name__)

#: a device younger than this whose creator still runs may not have its row yet
GRACE_SECONDS = 120.0


class Sweeper:
    """One sweep over one driver's devices."""

    def __init__(self, driver: "NetnsDeviceDriver", known_ids: Optional[set] = None):
        self.driver = driver
        self.known_ids = known_ids

    def run(self) -> int:
        """Sweep; return how many devices were removed."""
        known = self.known_ids if self.known_ids is not None else self._known_from_db()
        removed = 0
        for netns in list(self.driver.store.names()):
            record = self.driver.store.load(netns)
            if self._keep(record, known):
                continue
            LOG.warning("sweep: netns device %s in %s has no owner; removing it",
                        record.id if record else "(unrecorded)", netns)
            self.driver.destroy(netns)
            removed += 1
        self._kill_strays()
        with iproute.host_lock():
            self.driver._release_bridges()
        return removed

    @staticmethod
    def _keep(record: Optional[DeviceRecord], known: Optional[set]) -> bool:
        if record is None:
            return False
        if known is not None and record.id in known:
            return True
        if (record.creator_pid != os.getpid() and iproute.pid_alive(record.creator_pid)
                and time.time() - record.created_at < GRACE_SECONDS):
            return True
        if known is None:
            return record.status == "active"
        return False

    def _kill_strays(self) -> None:
        root = str(self.driver.store.root) + "/"
        strays = []
        for pid in iproute.find_pids(root):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmdline = fh.read().decode(errors="replace")
            except OSError:
                continue
            netns = cmdline.split(root, 1)[1].split("/", 1)[0] if root in cmdline else ""
            if netns and not self.driver.store.workdir(netns).exists():
                LOG.warning("sweep: pid %d still runs for removed device %s; killing it", pid, netns)
                strays.append(pid)
        if not strays:
            return
        links_before = len(iproute.list_links(naming.MGMT_LINK_PREFIX))
        iproute.kill_pids(strays)
        # the kernel frees an unnamed namespace, and its veths, shortly after its last
        # process exits; wait for that so the bridges can go in the same sweep
        deadline = time.monotonic() + 3.0
        while (len(iproute.list_links(naming.MGMT_LINK_PREFIX)) >= links_before
               and time.monotonic() < deadline):
            time.sleep(0.02)

    def _known_from_db(self) -> Optional[set]:
        conf = self.driver.conf
        if conf is None:
            return None
        try:
            from sqlalchemy import select

            from nfp.db.engine import make_engine
            from nfp.db.models import NetworkFunctionDevice
            engine = make_engine(conf.database_url)
            try:
                with engine.connect() as conn:
                    rows = conn.execute(select(NetworkFunctionDevice.id).where(
                        NetworkFunctionDevice.device_type == "netns"))
                    return {row[0] for row in rows}
            finally:
                engine.dispose()
        except Exception as exc:  # noqa: BLE001 - no database means a cautious sweep
            LOG.warning("sweep: cannot read netns devices from the database (%s); "
                        "removing only half-made devices", exc)
            return None
