"""The channel factory core: tree shape, DW odometer, transactions, signing, views, exits.

Pure code, no I/O: daemons in `superscalar.node` feed it events and carry out
the effects. Typical flow (LSP side)::

    shape = build_shape(spec)                       # deterministic layout, refuses bad params
    state = FactoryState.initial(shape, points)     # points from LStockSecrets
    tree = FactoryTree.build(shape, state)          # unsigned txs, sighashes
    view = extract_view(tree, client)               # PROPOSE, per client
    plan = SigningPlan.for_tree(tree)               # sparse sessions
    ...Signer / Coordinator rounds (or run_ceremony in-process)...
"""

from .close import (
    FundingRef,
    FundingSpend,
    cooperative_close,
    distribution_tx,
    funding_close,
    funding_distribution,
)
from .errors import (
    BundleError,
    ExitBudgetError,
    FactoryError,
    OdometerExhaustedError,
    ShapeError,
    SigningError,
    ViewError,
)
from .exits import (
    ExitPath,
    ExitStep,
    TreeOutput,
    client_exit,
    cpfp_child,
    funding_output_ref,
    lstock_burn_tx,
    lstock_output_ref,
    lstock_sweep_tx,
    onchain_node_outputs,
    timeout_recovery_tx,
    tx_output_ref,
    unilateral_exit,
)
from .lstock import LStockSecrets, reveal_into_store, verify_burn_secret
from .odometer import Advance, Odometer
from .outputs import KeyAggCache, MusigOutput
from .placement import Placement, place_clients
from .shape import (
    ClientSpec,
    DWParams,
    FactoryParams,
    FactorySpec,
    FeePolicy,
    Node,
    Shape,
    build_shape,
)
from .signing import (
    AggNonceBundle,
    CeremonyResult,
    Coordinator,
    NonceBundle,
    PartialSigBundle,
    SessionSpec,
    SignatureBundle,
    Signer,
    SigningPlan,
    run_ceremony,
    sign_tree,
)
from .tree import (
    FactoryScripts,
    FactoryState,
    FactoryTree,
    LeafAllocation,
    SignedTree,
    TreeTx,
    TxKind,
)
from .view import ClientExpectation, ClientView, VerifiedView, ViewStep, extract_view, verify_view

__all__ = [
    "Advance",
    "AggNonceBundle",
    "BundleError",
    "CeremonyResult",
    "ClientExpectation",
    "ClientSpec",
    "ClientView",
    "Coordinator",
    "DWParams",
    "ExitBudgetError",
    "ExitPath",
    "ExitStep",
    "FactoryError",
    "FactoryParams",
    "FactoryScripts",
    "FactorySpec",
    "FactoryState",
    "FactoryTree",
    "FeePolicy",
    "FundingRef",
    "FundingSpend",
    "KeyAggCache",
    "LStockSecrets",
    "LeafAllocation",
    "MusigOutput",
    "Node",
    "NonceBundle",
    "Odometer",
    "OdometerExhaustedError",
    "PartialSigBundle",
    "Placement",
    "SessionSpec",
    "Shape",
    "ShapeError",
    "SignatureBundle",
    "SignedTree",
    "Signer",
    "SigningError",
    "SigningPlan",
    "TreeOutput",
    "TreeTx",
    "TxKind",
    "VerifiedView",
    "ViewError",
    "ViewStep",
    "build_shape",
    "client_exit",
    "cooperative_close",
    "cpfp_child",
    "distribution_tx",
    "extract_view",
    "funding_close",
    "funding_distribution",
    "funding_output_ref",
    "lstock_burn_tx",
    "lstock_output_ref",
    "lstock_sweep_tx",
    "onchain_node_outputs",
    "place_clients",
    "reveal_into_store",
    "run_ceremony",
    "sign_tree",
    "timeout_recovery_tx",
    "tx_output_ref",
    "unilateral_exit",
    "verify_burn_secret",
    "verify_view",
]
