"""Live-migration window planning: a pre-copy downtime model, its calibration, a window
planner (exact MILP and greedy), plan checks and plan evaluation. Pure: frames in, frames out.

    model        MigrationModel.predict: downtime and duration per VM x load (vectorised)
    calibration  calibrate: fit the dirty-rate coefficients from observed migrations
    constraints  PlanConstraints: windows, concurrency, bandwidth, blackouts, deadline
    planner      plan_migrations: a window per VM, and a summary
    checks       check_plan: every violated constraint of a plan
    evaluation   evaluate_plan: realised load/downtime vs the oracle and naive plans
    decision     decision_regret, score_plans: forecasts judged by the plans they induce
                 (decision_backtest in zhuge.migration.decision_backtest)
"""

from zhuge.migration.calibration import Calibration, calibrate, synthetic_history
from zhuge.migration.checks import check_plan
from zhuge.migration.constraints import PlanConstraints
from zhuge.migration.decision import DecisionTask, captured_share, decision_regret, score_plans
from zhuge.migration.evaluation import PlanEvaluation, baseline_plan, evaluate_plan
from zhuge.migration.model import MigrationEstimate, MigrationModel, simulate_precopy
from zhuge.migration.planner import PLAN_COLUMNS, MigrationPlan, plan_migrations
from zhuge.migration.synthetic import SyntheticFleet, synthetic_fleet

__all__ = [
    "PLAN_COLUMNS",
    "Calibration",
    "DecisionTask",
    "MigrationEstimate",
    "MigrationModel",
    "MigrationPlan",
    "PlanConstraints",
    "PlanEvaluation",
    "SyntheticFleet",
    "baseline_plan",
    "calibrate",
    "captured_share",
    "check_plan",
    "decision_regret",
    "evaluate_plan",
    "plan_migrations",
    "score_plans",
    "simulate_precopy",
    "synthetic_fleet",
    "synthetic_history",
]
