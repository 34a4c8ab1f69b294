"""One delivered message on its way from the consumer thread to its ack."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nfp.rpc.types import IncomingRequest


@dataclass(eq=False)
class Delivery:
    """A decoded request with the broker message it came in.

    ``generation`` is the consumer connection it was delivered on: after a
    reconnect its delivery tag means nothing, so its ack is skipped (the broker
    redelivers it and :mod:`nfp.rpc.dedupe` recognises the copy).
    """

    request: IncomingRequest
    message: Any
    generation: int
    #: how many times committing it alone has failed
    attempts: int = 0
