"""The README's main-job command works: a firewall NF on the shipped pfSense
simulator reaches ACTIVE, its rules are on the appliance, and the delete empties it."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "quickstart.sh"


def test_quickstart_configures_the_simulator_and_cleans_up(tmp_path):
    env = dict(os.environ, NFP_STATE_DIR=str(tmp_path / "state"), NFP_QUICKSTART_NO_INSTALL="1",
               NFP_QUICKSTART_NO_DEMO="1")
    for key in ("NFP_DATABASE_URL", "NFP_TRANSPORT_URL", "NFP_CONFIG"):
        env.pop(key, None)  # the main job runs on embedded defaults
    out = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "the appliance holds 2 firewall rule(s)" in text
    assert "'destination_port': '80'" in text and "'source': '198.18.1.0/24'" in text
    assert "in sync" in text
    assert "the appliance holds 0 firewall rule(s)" in text
    assert "quickstart finished" in text
    logs = (tmp_path / "state" / "nfp.log").read_text()
    assert "Traceback" not in logs
