"""Typed errors for the factory core.

Every refusal names what was wrong in terms an operator can act on (which
node, which signer, which amount), because a factory ceremony involves many
parties and "invalid" alone would not say whom to blame or what to change.
"""

from __future__ import annotations

__all__ = [
    "BundleError",
    "ExitBudgetError",
    "FactoryError",
    "OdometerExhaustedError",
    "ShapeError",
    "SigningError",
    "ViewError",
]


class FactoryError(ValueError):
    """Base class for every factory-layer refusal."""


class ShapeError(FactoryError):
    """Parameters from which no valid tree can be built (dust, conservation, size, keys)."""


class ExitBudgetError(ShapeError):
    """The worst-case unilateral exit delay of the shape exceeds the allowed budget."""

    def __init__(self, worst_case: int, budget: int, detail: str = "") -> None:
        self.worst_case = worst_case
        self.budget = budget
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"worst-case exit delay {worst_case} blocks exceeds the budget of {budget}{extra}"
        )


class OdometerExhaustedError(FactoryError):
    """No Decker-Wattenhofer state is left to advance to: the factory must be replaced."""


class ViewError(FactoryError):
    """A client refuses the LSP's proposal: its path view does not verify."""


class SigningError(FactoryError):
    """A signing contribution is bad; `signer` (participant index) and `session` say whose/where.

    `signer` is None when the fault is not attributable to one participant.
    """

    def __init__(self, message: str, *, signer: int | None = None, session: int | None = None):
        self.signer = signer
        self.session = session
        where = []
        if signer is not None:
            where.append(f"signer {signer}")
        if session is not None:
            where.append(f"session {session}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)


class BundleError(SigningError):
    """A nonce or partial-signature bundle that is malformed, incomplete or has extra entries."""
