"""Typed errors for the ladder core: lifecycle parameters, rotation and key turnover."""

from __future__ import annotations

__all__ = ["LadderError", "TurnoverError"]


class LadderError(ValueError):
    """Base class for every ladder-layer refusal (`code`: a short machine-readable reason
    where one was given, else "ladder")."""

    def __init__(self, message: str, *, code: str = "ladder") -> None:
        super().__init__(message)
        self.code = code


class TurnoverError(LadderError):
    """A key turnover step was refused: bad pre-signature, wrong completion, wrong party."""
