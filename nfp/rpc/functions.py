"""A dispatcher that serves plain Python functions, without a database.

For topics that need no durable intake, for tests, and for trying a caller
against nfp's listener: ``FunctionDispatcher({"ping": lambda ctxt, x: x})``.
Each function is called as ``fn(context, **args)``; an exception becomes the
caller's remote error.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Mapping, Optional

from nfp.rpc.types import IncomingRequest, Reply

LOG = logging.getLogger(__name__)


class FunctionDispatcher:
    """Implements :class:`nfp.rpc.types.Dispatcher` over a table of functions.

    Parameters:
        functions(dict): method name -> ``fn(context, **args)``.
        reads(iterable): names of the methods that only read (served by the read pool).
        topics(iterable): topics served; None means every topic.
        version(str): the API version announced to version checks.
    """

    def __init__(self, functions: Mapping[str, Callable[..., Any]], reads: Iterable[str] = (),
                 topics: Optional[Iterable[str]] = None, version: str = "1.0"):
        self.functions = dict(functions)
        self.reads = frozenset(reads)
        self.topics = frozenset(topics) if topics is not None else None
        self.version = version

    def api_version(self, topic: str) -> str:
        """The version this dispatcher implements (same on every topic)."""
        return self.version

    def has_method(self, topic: str, method: str) -> bool:
        """True if ``method`` is served on ``topic``."""
        return (self.topics is None or topic in self.topics) and method in self.functions

    def is_read(self, topic: str, method: str) -> bool:
        """True if ``method`` was declared a read."""
        return method in self.reads

    def handle_mutations(self, requests: list[IncomingRequest]) -> list[Reply]:
        """Call each function in order; one request's error does not affect the others."""
        return [self._call(r) for r in requests]

    def handle_read(self, request: IncomingRequest) -> Reply:
        """Call the read function."""
        return self._call(request)

    def _call(self, request: IncomingRequest) -> Reply:
        try:
            return Reply(result=self.functions[request.method](request.context, **request.args))
        except Exception as exc:  # becomes the caller's RemoteError
            return Reply(error=exc)
