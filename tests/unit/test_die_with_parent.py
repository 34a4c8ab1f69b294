"""A worker or companion whose listener died before it could ask the kernel to kill
it with its parent ends at once instead of running on unsupervised."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

CHILD_SCRIPT = textwrap.dedent("""
    import multiprocessing, os, sys, time

    def child(flag):
        open(flag + ".started", "w").write("")
        time.sleep(1.0)                      # the parent is gone by now
        from nfp.engine.worker import _die_with_parent
        _die_with_parent()
        open(flag, "w").write(str(os.getpid()))  # reached only if it did not exit

    if __name__ == "__main__":
        ctx = multiprocessing.get_context("spawn")
        p = ctx.Process(target=child, args=(sys.argv[1],))
        p.start()
        print(p.pid, flush=True)
        os._exit(0)                          # the listener dies, as by kill -9
""")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_child_whose_parent_is_already_gone_exits(tmp_path):
    script, flag = tmp_path / "parent.py", tmp_path / "survived"
    script.write_text(CHILD_SCRIPT)
    out = subprocess.run([sys.executable, str(script), str(flag)], capture_output=True, text=True,
                         timeout=60, cwd=str(tmp_path))
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 30
    while _alive(pid):
        assert time.monotonic() < deadline, "the orphaned child kept running"
        time.sleep(0.1)
    assert (tmp_path / "survived.started").exists()  # it ran up to the call
    assert not flag.exists()
