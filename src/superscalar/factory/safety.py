"""A client's own safety policy: which proposed factory terms it will sign at all.

`verify_view` checks that the LSP's path view is internally sound for the
parameters it came with. It cannot say whether those parameters are *safe*:
a PROPOSE carries its own CLTV timeout, DW step, states per layer, arity and
anchor value, and a client that checked the view against parameters taken
from the same message would sign whatever the LSP chose — e.g. a CLTV timeout
so near that its exit could not cross the first DW layer before the LSP's
timeout sweep. So the bounds here come from the client alone: its
configuration (`ClientSafety`, with per-network defaults) and the chain
height it reads itself. Nothing in them is taken from the message checked.

The rules (each refusal has a `code`):

- `cltv-too-soon`: CLTV ≥ height + `min_factory_life`;
- `dw-step-too-short` / `dw-step-too-long`, `too-many-states`, `arity-too-wide`,
  `anchor-too-large`: the tree knobs within the client's bounds;
- `exit-too-slow`: the worst-case exit delay of the client's own path (from
  `verify_view`) ≤ `max_exit_delay`;
- `exit-window-too-short`: CLTV − height ≥ exit window, where the exit window
  is the path's worst-case exit delay + `confirm_margin` (blocks for the path's
  transactions and their CPFP children to confirm): an exit started now ends
  before the LSP's timeout path opens;
- `distribution-too-late`: CLTV − distribution locktime ≥ exit window. The
  LSP may broadcast the root kickoff just before the distribution locktime
  (the "kickoff defense"), which spends the distribution tx's input for
  good; from then on the client's only way out is its exit, which must still
  finish before the CLTV timeout.

Why no `to_self_delay` in the window: the CLTV timeout leaf is only on the
factory's node outputs (`outputs.timeout_output`). The leaf's channel output
is a key-path-only MuSig2(client, LSP) (`outputs.channel_output`, the same
bytes as `channel.scripts` funding), and the commitment and its to_local /
HTLC outputs have no CLTV-timeout branch for the LSP. Once the leaf state tx
confirms, the factory CLTV no longer reaches the client's money; the
commitment's `to_self_delay` runs against revocation only, so it is the
channel's business (breach watch), not the factory deadline's.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import FactoryError
from .shape import BOLT_MAX_CLTV_EXPIRY, FactoryParams

__all__ = [
    "MAINNET_SAFETY",
    "REGTEST_SAFETY",
    "ClientSafety",
    "TermsRefused",
    "check_exit_window",
    "check_params",
    "exit_window",
    "safety_for",
]


class TermsRefused(FactoryError):
    """A client refuses proposed factory terms by its own safety policy."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        """Machine-readable reason (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class ClientSafety:
    """The client's bounds on factory terms (blocks unless noted)."""

    min_factory_life: int
    """The CLTV timeout must be at least this far above the current height."""
    confirm_margin: int
    """Blocks the exit path's txs (and the CPFP children) get to confirm, on top of the
    relative locks of the path's DW layers."""
    min_dw_step: int = 1
    """A newer DW state must be able to confirm within one step of an older one."""
    max_dw_step: int = 144
    max_states_per_layer: int = 32
    max_arity: int = 16
    """Widest internal node (leaf arity is 1 or 2 by construction): a wide node's state tx
    is big, and the client may have to CPFP it on its way out."""
    max_anchor_value: int = 1_000
    """Sat per P2A anchor: anchors are anyone-can-spend, so value in them is not ours."""
    max_exit_delay: int = BOLT_MAX_CLTV_EXPIRY
    """Ceiling on the worst-case exit delay of the client's own path."""

    def __post_init__(self) -> None:
        for name in ("min_factory_life", "confirm_margin", "max_anchor_value"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if not 1 <= self.min_dw_step <= self.max_dw_step:
            raise ValueError("need 1 ≤ min_dw_step ≤ max_dw_step")
        if self.max_states_per_layer < 2 or self.max_arity < 2 or self.max_exit_delay < 0:
            raise ValueError("max_states_per_layer and max_arity must be at least 2")


REGTEST_SAFETY = ClientSafety(min_factory_life=30, confirm_margin=4)
"""Short, for demos and tests: regtest blocks are mined on demand."""
MAINNET_SAFETY = ClientSafety(
    min_factory_life=2016, confirm_margin=144, min_dw_step=6, max_dw_step=144
)
"""Two weeks of life at least; a day for the exit path's txs to confirm; a newer DW state
gets at least an hour (6 blocks) to confirm ahead of an older one."""


def safety_for(network: str, **overrides: int | None) -> ClientSafety:
    """Network defaults (regtest short, anything else mainnet-like) with the non-None
    overrides of the client's configuration."""
    base = REGTEST_SAFETY if network == "regtest" else MAINNET_SAFETY
    values = {
        name: getattr(base, name) if overrides.get(name) is None else overrides[name]
        for name in ClientSafety.__dataclass_fields__
    }
    unknown = set(overrides) - set(values)
    if unknown:
        raise ValueError(f"unknown safety settings: {sorted(unknown)}")
    return ClientSafety(**values)  # type: ignore[arg-type]


def exit_window(worst_exit_delay: int, confirm_margin: int) -> int:
    """Blocks an exit needs from its first broadcast until the leaf state tx has confirmed."""
    return worst_exit_delay + confirm_margin


def check_params(safety: ClientSafety, params: FactoryParams, height: int) -> None:
    """The proposed parameters within the client's bounds (cheap: before `verify_view`).
    `TermsRefused` otherwise."""
    life = params.cltv_timeout - height
    if life < safety.min_factory_life:
        raise TermsRefused(
            "cltv-too-soon",
            f"CLTV timeout {params.cltv_timeout} is {life} blocks away (need"
            f" ≥ {safety.min_factory_life})",
        )
    step, states = params.dw.step_blocks, params.dw.states_per_layer
    if step < safety.min_dw_step:
        raise TermsRefused("dw-step-too-short", f"DW step {step} blocks < {safety.min_dw_step}")
    if step > safety.max_dw_step:
        raise TermsRefused("dw-step-too-long", f"DW step {step} blocks > {safety.max_dw_step}")
    if states > safety.max_states_per_layer:
        raise TermsRefused(
            "too-many-states", f"{states} DW states per layer > {safety.max_states_per_layer}"
        )
    widest = max(params.arity[1:], default=2)
    if widest > safety.max_arity:
        raise TermsRefused("arity-too-wide", f"internal arity {widest} > {safety.max_arity}")
    anchor = params.fees.anchor_value
    if anchor > safety.max_anchor_value:
        raise TermsRefused(
            "anchor-too-large", f"anchor value {anchor} sat > {safety.max_anchor_value}"
        )


def check_exit_window(
    safety: ClientSafety,
    cltv_timeout: int,
    height: int,
    worst_exit_delay: int,
    distribution_locktime: int,
) -> None:
    """The client's exit (worst case of its own path, from `verify_view`) fits before the
    CLTV timeout both if started now and if started at the distribution locktime (see the
    module docstring). `TermsRefused` otherwise."""
    if worst_exit_delay > safety.max_exit_delay:
        raise TermsRefused(
            "exit-too-slow",
            f"worst-case exit delay {worst_exit_delay} blocks > {safety.max_exit_delay}",
        )
    window = exit_window(worst_exit_delay, safety.confirm_margin)
    if cltv_timeout - height < window:
        raise TermsRefused(
            "exit-window-too-short",
            f"CLTV timeout {cltv_timeout} is {cltv_timeout - height} blocks away; an exit needs"
            f" {window} ({worst_exit_delay} of DW delays + {safety.confirm_margin} to confirm)",
        )
    if cltv_timeout - distribution_locktime < window:
        raise TermsRefused(
            "distribution-too-late",
            f"distribution locktime {distribution_locktime} leaves"
            f" {cltv_timeout - distribution_locktime} blocks before the CLTV timeout"
            f" {cltv_timeout}; an exit needs {window}",
        )
