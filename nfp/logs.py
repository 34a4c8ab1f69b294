"""One log stream for the listener and its workers.

Every process writes whole lines to the same inherited stderr (or the same file
opened with O_APPEND): each line is a single write below PIPE_BUF, so lines from
different processes never interleave, and a worker killed with SIGKILL cannot
leave a shared queue or lock behind (which a multiprocessing log queue could).
Registered secret values are masked in every record.
"""
from __future__ import annotations

import logging
import sys
import threading

_SECRETS: set[str] = set()
_LOCK = threading.Lock()
FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


def register_secret(value: str) -> None:
    """Mask ``value`` wherever it would appear in a log line from now on."""
    if value and len(value) >= 4:
        with _LOCK:
            _SECRETS.add(value)


class RedactFilter(logging.Filter):
    """Replace registered secrets by ``***`` in the formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _SECRETS:
            return True
        msg = record.getMessage()
        masked = msg
        for secret in list(_SECRETS):
            if secret in masked:
                masked = masked.replace(secret, "***")
        if masked != msg:
            record.msg, record.args = masked, None
        return True


def setup(conf, process_name: str) -> None:
    """Configure the root logger of this process from ``conf.logging``."""
    import multiprocessing
    multiprocessing.current_process().name = process_name
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if conf is not None and conf.logging.file:
        handler: logging.Handler = logging.FileHandler(conf.logging.file, mode="a")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactFilter())
    root.addHandler(handler)
    root.setLevel(conf.logging.level.upper() if conf is not None else "INFO")
    for noisy in ("amqp", "kombu", "sqlalchemy.engine", "paramiko"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
