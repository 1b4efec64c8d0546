"""Secrets travel as ``Secret`` objects: read from an environment variable, masked everywhere else.

Configs name the variable (``api_key_env: OPENAI_API_KEY``); the value is read at the edge and,
when a Ray worker has no such variable of its own (a local cluster started before the key was
exported), handed to it inside a ``Secret`` whose ``repr``/``str`` never show the value.
"""

from __future__ import annotations

import os


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return (Secret, (self._value,))


def from_env(name: str) -> Secret | None:
    value = os.environ.get(name)
    return Secret(value) if value else None


def resolve(name: str, fallback: Secret | None) -> str | None:
    """The worker's own variable wins (a cluster's mounted secret); else what the driver passed."""
    own = os.environ.get(name)
    if own:
        return own
    return fallback.reveal() if fallback is not None else None
