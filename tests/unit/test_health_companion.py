"""The companion-process main shared by the health monitor (``nfp.engine.companion.serve``),
in real child processes: a database that is not there yet is waited for, a
configuration error halts the daemon (exit code 3), any other boot failure is
respawned (exit code 1), and ``close`` runs after ``run``."""
from __future__ import annotations

import multiprocessing

import pytest

from nfp import config as nfp_config
from nfp.engine.companion import EXIT_BOOT_ERROR, serve

CTX = multiprocessing.get_context("fork")


class Scripted:
    """A companion whose boot fails with ``failures`` (in order), then runs and exits 5."""

    def __init__(self, failures, marker):
        self.failures, self.marker = list(failures), marker

    def boot(self):
        if self.failures:
            raise self.failures.pop(0)

    def run(self):
        return 5

    def close(self):
        with open(self.marker, "w") as f:
            f.write("closed")


def _exit_code(tmp_path, failures) -> int:
    conf = nfp_config.load(None, {"state_dir": str(tmp_path)}, environ={})
    heartbeat = CTX.Value("d", 0.0, lock=False)
    proc = CTX.Process(target=serve, args=("test-companion", conf, Scripted(failures, tmp_path / "closed"),
                                           heartbeat))
    proc.start()
    proc.join(120)
    assert proc.exitcode is not None, "the companion did not exit"
    return proc.exitcode


def test_an_unreachable_database_is_waited_for_then_the_process_runs_and_closes(tmp_path):
    assert _exit_code(tmp_path, [ConnectionError("refused"), TimeoutError("db")]) == 5
    assert (tmp_path / "closed").read_text() == "closed"


@pytest.mark.parametrize("failure, code", [(LookupError("no driver 'x'"), EXIT_BOOT_ERROR),
                                           (RuntimeError("bug"), 1)])
def test_a_boot_failure_halts_or_respawns(tmp_path, failure, code):
    assert _exit_code(tmp_path, [failure]) == code
    assert not (tmp_path / "closed").exists()  # nothing ran, so nothing to close
