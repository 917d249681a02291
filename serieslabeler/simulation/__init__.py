"""An oracle plays the expert over labeling scenarios to measure interactions against test metrics."""

from .engine import (
    compare_sampling,
    run_scenario,
    simulate,
    split_collection,
    supervised_f1,
)
from .proposals import ProposalCeiling, proposal_ceiling
from .records import (
    NETWORK_SCENARIOS,
    OFFSET_BINS,
    ORDERED_SCENARIOS,
    REACH,
    SCENARIOS,
    Collection,
    CurvePoint,
    ScenarioRun,
    SimulationConfig,
    SimulationResult,
    json_safe,
    write_result,
)
from .scenarios import SCENARIO_RUNNERS

__all__ = [
    "supervised_f1",
    "split_collection",
    "run_scenario",
    "simulate",
    "compare_sampling",
    "SCENARIOS",
    "ORDERED_SCENARIOS",
    "NETWORK_SCENARIOS",
    "OFFSET_BINS",
    "REACH",
    "Collection",
    "SimulationConfig",
    "CurvePoint",
    "ScenarioRun",
    "SimulationResult",
    "json_safe",
    "write_result",
    "SCENARIO_RUNNERS",
    "ProposalCeiling",
    "proposal_ceiling",
]
