"""Typed errors for the store, so a daemon can tell a bad database from a bug."""

from __future__ import annotations

__all__ = ["MigrationError", "SchemaTooNewError", "StoreError"]


class StoreError(Exception):
    """The database cannot be used as asked (wrong mode, wrong schema, failed migration)."""


class MigrationError(StoreError):
    """A migration list is malformed, failed to apply, or differs from what was applied."""


class SchemaTooNewError(StoreError):
    """The database was written by newer code; opening it could lose or corrupt state."""

    def __init__(self, found: int, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(
            f"database schema version {found} is newer than this software supports "
            f"({supported}); upgrade the software, do not downgrade the database"
        )
