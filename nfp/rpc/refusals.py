"""What the listener answers to a message it cannot serve at all: the error
(an oslo ``failure`` string), the reply address if one can still be read, and
the log text. Pure functions; the listener sends and settles."""
from __future__ import annotations

from typing import Any, Optional

from nfp.rpc import codec, inflate
from nfp.rpc.errors import MessageTooLarge, describe, safe
from nfp.rpc.types import IncomingRequest

Refusal = tuple[str, Optional[tuple[str, str]], str]


def decode(topic: str, message: Any, limit: int) -> tuple[Optional[IncomingRequest], Optional[Refusal]]:
    """The request in a delivery, or why it is refused: a body over ``limit``
    bytes or one that is not an oslo request."""
    # kombu's Message has already inflated a compressed body (capped: nfp.rpc.inflate)
    body = message.body
    headers = {k: v for k, v in (message.headers or {}).items() if k != "compression"}
    if len(body) > limit:
        exc: Exception = MessageTooLarge(len(body), limit)
        return None, (codec.serialize_failure(exc, with_traceback=False),
                      codec.reply_address(body, headers), f"request on {topic}: {exc}")
    try:
        return codec.decode_request(body, headers, topic), None
    except codec.CodecError as exc:
        return None, (codec.serialize_failure(exc, with_traceback=False),
                      codec.reply_address(body, headers), f"malformed request on {topic}: {exc}")


def decode_error(topic: str, message: Any, exc: BaseException) -> Refusal:
    """kombu could not build the message: a compressed body that inflates past
    the limit (:mod:`nfp.rpc.inflate`), an unknown codec or a corrupt stream."""
    head = getattr(exc, "head", None)
    address = codec.reply_address_in_text(head) if head else None
    if isinstance(exc, KeyError):
        exc = codec.CodecError("headers.compression", "unsupported compression "
                               f"{safe((message.headers or {}).get('compression'), 64)}")
    elif not isinstance(exc, inflate.InflatedTooLarge):
        exc = codec.CodecError("headers.compression", f"cannot decompress: {describe(exc)}")
    return codec.serialize_failure(exc, with_traceback=False), address, f"message on {topic}: {exc}"


def internal_error(message: Any, exc: BaseException, limit: int) -> Optional[tuple[str, str]]:
    """The reply address of a message whose handling hit a bug, if readable."""
    body = message.body
    if isinstance(body, (bytes, str)) and len(body) <= limit:
        return codec.reply_address(body)
    return None
