"""Typed errors for the ladder core: lifecycle parameters, rotation and key turnover."""

from __future__ import annotations

__all__ = ["LadderError", "TurnoverError"]


class LadderError(ValueError):
    """Base class for every ladder-layer refusal."""


class TurnoverError(LadderError):
    """A key turnover step was refused: bad pre-signature, wrong completion, wrong party."""
