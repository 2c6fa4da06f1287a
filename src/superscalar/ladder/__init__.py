"""The ladder core: factory lifecycle, rotation planning, PTLC key turnover, LSP-alone close.

Pure code, no I/O. An LSP runs overlapping factories: each is ACTIVE for a
period, then DYING while its clients move their balances into the next one
and hand over their factory keys (`turnover`), then EXPIRED at its CLTV
timeout. With every key in hand the LSP closes the old factory alone
(`lsp_alone_close`); a client that never hands over is left with its tree
exit and the distribution tx, and the LSP with the timeout path.
"""

from .close import LspAloneClose, StayerClose, close_with_stayers, lsp_alone_close, missing_keys
from .errors import LadderError, TurnoverError
from .lifecycle import (
    MAINNET_LADDER,
    REGTEST_LADDER,
    Ladder,
    LadderParams,
    Lifecycle,
    Phase,
    ladder_params_for,
)
from .move import (
    CLAIM_MARGIN_BLOCKS,
    MOVE_MARGIN_BLOCKS,
    MovePtlc,
    check_move_ptlc,
    claim_deadline,
    claim_lead,
    move_amount,
    plan_move,
)
from .rotation import Member, RotationPlan, Staying, plan_rotation
from .turnover import (
    ClientStage,
    LspStage,
    LspTurnover,
    TurnoverContext,
    complete_turnover,
    extract_turnover_key,
    factory_key,
    presign_turnover,
)

__all__ = [
    "CLAIM_MARGIN_BLOCKS",
    "MAINNET_LADDER",
    "MOVE_MARGIN_BLOCKS",
    "REGTEST_LADDER",
    "ClientStage",
    "Ladder",
    "LadderError",
    "LadderParams",
    "Lifecycle",
    "LspAloneClose",
    "LspStage",
    "LspTurnover",
    "Member",
    "MovePtlc",
    "Phase",
    "RotationPlan",
    "StayerClose",
    "Staying",
    "TurnoverContext",
    "TurnoverError",
    "check_move_ptlc",
    "claim_deadline",
    "claim_lead",
    "close_with_stayers",
    "complete_turnover",
    "extract_turnover_key",
    "factory_key",
    "ladder_params_for",
    "lsp_alone_close",
    "missing_keys",
    "move_amount",
    "plan_move",
    "plan_rotation",
    "presign_turnover",
]
