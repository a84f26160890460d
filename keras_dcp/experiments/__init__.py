"""Experiments: attack every defense setting, report, tabulate, plot.

>>> from keras_dcp import experiments
>>> results = experiments.run_experiment(victim, x_test, y_test, x_queries,
...                                      defenses=["none", "dcp"], attacks=["knockoff", "knockoff-label"],
...                                      budget=10_000, epochs=10)  # doctest: +SKIP
>>> print(experiments.format_table(results))  # doctest: +SKIP
>>> experiments.plot_tradeoff(results, "tradeoff.png")  # doctest: +SKIP
"""

from keras_dcp.experiments.plots import plot_tradeoff
from keras_dcp.experiments.runner import ATTACKS, DefenseMeter, best_responses, make_attack, run_experiment
from keras_dcp.experiments.schema import RUN_FIELDS, load_results, save_results, validate_results
from keras_dcp.experiments.sweep import DEFAULT_GRIDS, defense_specs, expand_sweep
from keras_dcp.experiments.table import format_table, setting_label

__all__ = [
    "ATTACKS",
    "DEFAULT_GRIDS",
    "DefenseMeter",
    "RUN_FIELDS",
    "best_responses",
    "defense_specs",
    "expand_sweep",
    "format_table",
    "load_results",
    "make_attack",
    "plot_tradeoff",
    "run_experiment",
    "save_results",
    "setting_label",
    "validate_results",
]
