"""A regtest chainstate owned by libbitcoinkernel (Bitcoin Core's validation code).

Blocks go in through `process_block`; the kernel decides whether they connect.
Its verdict is reported with the kernel's own reason string (e.g.
`bad-cb-amount`), read from its log, because a rejected block we assembled
ourselves is always a bug worth a precise message.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pbk

__all__ = ["BlockRejectedError", "KernelChain"]

_REJECT = re.compile(
    r"(?:validation error: |failed, |AcceptBlock: |FAILED \()"  # where Core logs a reason
    r"([a-z][a-z0-9-]*[a-z0-9])(?:, ([^)\n]*))?"  # the token, then its debug text
)


class BlockRejectedError(RuntimeError):
    """The kernel refused a block; `reason` is its reject string (`bad-txns-...`)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(
            f"block rejected by the kernel: {reason}" + (f" ({detail})" if detail else "")
        )
        self.reason = reason
        self.detail = detail


class _LogTap:
    """Collects kernel log lines while a block is being processed (kernel logging is global)."""

    _lock = threading.Lock()
    _lines: list[str] | None = None
    _connection: pbk.LoggingConnection | None = None

    @classmethod
    def _ensure(cls) -> None:
        if cls._connection is None:
            cls._connection = pbk.LoggingConnection(cb=cls._on_line)

    @classmethod
    def _on_line(cls, line: str) -> None:
        if cls._lines is not None:
            cls._lines.append(line)

    @classmethod
    @contextmanager
    def capture(cls) -> Iterator[list[str]]:
        with cls._lock:
            cls._ensure()
            lines: list[str] = []
            cls._lines = lines
            try:
                yield lines
            finally:
                cls._lines = None


def _reason_from_log(lines: list[str]) -> tuple[str, str]:
    """Pull Core's reject token (`bad-txns-nonfinal`) and its debug text out of the log."""
    for line in lines:
        match = _REJECT.search(line)
        if match:
            return match.group(1), (match.group(2) or "").strip()
    return "rejected", " | ".join(line.strip() for line in lines[-3:])


class KernelChain:
    """One kernel chainstate in `datadir` (exclusive: one process at a time)."""

    def __init__(self, datadir: Path, chain_type: pbk.ChainType = pbk.ChainType.REGTEST) -> None:
        self.datadir = Path(datadir)
        self.datadir.mkdir(parents=True, exist_ok=True)
        self._checked: list[tuple[pbk.ValidationMode, pbk.BlockValidationResult]] = []
        self._callbacks = pbk.ValidationInterfaceCallbacks(block_checked=self._on_checked)
        with _LogTap.capture() as lines:
            try:
                self._chainman: pbk.ChainstateManager | None = pbk.load_chainman(
                    self.datadir / "kernel", chain_type, validation_callbacks=self._callbacks
                )
            except RuntimeError as exc:
                raise RuntimeError(
                    f"cannot open the kernel chainstate in {self.datadir / 'kernel'} "
                    f"(is another node using it?): {' | '.join(lines[-3:]) or exc}"
                ) from exc

    def _on_checked(
        self, _user: object, _block: pbk.Block, state: pbk.BlockValidationState
    ) -> None:
        self._checked.append((state.validation_mode, state.block_validation_result))

    @property
    def chainman(self) -> pbk.ChainstateManager:
        if self._chainman is None:
            raise RuntimeError("kernel chain is closed")
        return self._chainman

    def close(self) -> None:
        """Flush and release the datadir (the kernel writes its state on destruction)."""
        self._chainman = None

    # -- reading -------------------------------------------------------------------

    @property
    def height(self) -> int:
        return int(self.chainman.get_active_chain().height)

    def entry(self, height: int) -> pbk.BlockTreeEntry:
        chain = self.chainman.get_active_chain()
        if not 0 <= height <= chain.height:
            raise IndexError(f"no block at height {height}")
        return chain.block_tree_entries[height]

    def block_hash(self, height: int) -> bytes:
        """Block hash at `height` in internal byte order."""
        return bytes(self.entry(height).block_hash)

    def header_bytes(self, height: int) -> bytes:
        return bytes(self.entry(height).block_header)

    def read_block(self, height: int) -> bytes:
        """The raw block at `height` of the active chain, read from the kernel's block files."""
        return bytes(self.chainman.blocks[self.entry(height)])

    # -- writing -------------------------------------------------------------------

    def process_block(self, raw_block: bytes) -> None:
        """Validate and connect a block, or raise `BlockRejectedError` with the kernel's reason."""
        before = self.height
        self._checked.clear()
        with _LogTap.capture() as lines:
            try:
                block = pbk.Block(raw_block)
            except RuntimeError as exc:
                raise BlockRejectedError("block-decode-failed", str(exc)) from exc
            try:
                self.chainman.process_block(block)
            except pbk.ProcessBlockException as exc:
                reason, detail = _reason_from_log(lines)
                raise BlockRejectedError(reason, detail or str(exc)) from exc
        invalid = [c for c in self._checked if c[0] != pbk.ValidationMode.VALID]
        if invalid or self.height != before + 1:
            reason, detail = _reason_from_log(lines)
            if not invalid and not detail:
                detail = f"tip stayed at height {self.height}"
            raise BlockRejectedError(reason, detail)
