"""Translate upstream Heat templates into nfp config elements.

Placeholder until the translator lands: ``expand`` leaves Heat elements as
they are (opaque, ``UNHANDLED`` by drivers).
"""
from __future__ import annotations


class HeatError(ValueError):
    """A template nfp cannot translate; the message names the resource and its type."""


def expand(elements: list[dict], params: dict) -> list[dict]:
    """Replace every ``heat`` element by the nfp elements its template stands for."""
    return elements
