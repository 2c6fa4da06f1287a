"""Watching the chain for breaches: a sans-IO core and encrypted hints for towers."""

from __future__ import annotations

from .core import (
    Active,
    BreachDetected,
    Broadcast,
    BroadcastPackage,
    Effect,
    EntryKind,
    PersistScanHeight,
    Resolved,
    WatchEntry,
    WatchError,
    WatcherState,
    deadline_feerate,
    ladder_step,
    on_block,
    reactivate,
)
from .hints import Hint, HintError, decrypt_hint, encrypt_hint, hint_id

__all__ = [
    "Active",
    "BreachDetected",
    "Broadcast",
    "BroadcastPackage",
    "Effect",
    "EntryKind",
    "Hint",
    "HintError",
    "PersistScanHeight",
    "Resolved",
    "WatchEntry",
    "WatchError",
    "WatcherState",
    "deadline_feerate",
    "decrypt_hint",
    "encrypt_hint",
    "hint_id",
    "ladder_step",
    "on_block",
    "reactivate",
]
