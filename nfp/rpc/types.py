"""The contract between the RPC listener and whatever serves the requests."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Protocol


@dataclass
class IncomingRequest:
    """One decoded oslo request. ``context`` holds the ``_context_*`` keys without
    the prefix; it may carry an ``auth_token``, so it is never logged."""

    method: str
    args: dict[str, Any]
    context: dict[str, Any] = field(default_factory=dict)
    namespace: Optional[str] = None
    version: str = "1.0"
    msg_id: Optional[str] = None
    reply_q: Optional[str] = None
    #: the client's call_monitor_timeout (oslo ``_timeout``); heartbeats only when set
    monitor_timeout: Optional[float] = None
    unique_id: Optional[str] = None
    #: the topic the request arrived on
    topic: str = ""

    @property
    def is_call(self) -> bool:
        return self.msg_id is not None


@dataclass
class Reply:
    """The answer to one request: ``result`` or ``error`` (an exception)."""

    result: Any = None
    error: Optional[BaseException] = None


class Dispatcher(Protocol):
    """Serves decoded requests. Implemented by :mod:`nfp.api`.

    The listener calls ``handle_mutations`` with a batch of requests and acks them
    only after it returns: the implementation commits them durably in one
    transaction (group commit) before returning. ``handle_read`` answers a query
    and must not write.
    """

    def has_method(self, topic: str, method: str) -> bool: ...

    def is_read(self, topic: str, method: str) -> bool: ...

    def handle_mutations(self, requests: list[IncomingRequest]) -> list[Reply]: ...

    def handle_read(self, request: IncomingRequest) -> Reply: ...

    # Optional: reads answered on the consumer thread. Only for a read that is one
    # statement bounded in time (a stalled consumer stalls every caller).
    def serves_inline(self, topic: str, method: str) -> bool: ...

    def handle_inline_read(self, request: IncomingRequest) -> Reply: ...
