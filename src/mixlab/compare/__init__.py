"""`mixlab compare`: token mixers in one skeleton at one budget, several seeds, one table (run.py)."""
from .plan import Budget, budget_steps, match_width, model_kwargs, parse_budget, skeleton_args
from .run import CompareConfig, differences, run_compare
from .stats import describe, welch

__all__ = ["Budget", "CompareConfig", "budget_steps", "describe", "differences", "match_width", "model_kwargs",
           "parse_budget", "run_compare", "skeleton_args", "welch"]
