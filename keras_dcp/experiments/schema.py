"""The results JSON: its fields, a validator, and reading/writing.

::

    {"victim": {"dataset": str, "accuracy": float, ...},
     "runs": [{"defense": str, "params": dict, "attack": str, "budget": int,
               "defender_accuracy": float, "attacker_accuracy": float,
               "agreement": float, "l1_distance": float,
               "perturbed_fraction": float, "seconds": float, ...}, ...],
     "best_responses": [...], "config": {...}}

``victim.accuracy`` is the undefended victim's top-1 accuracy on the test
set; per run, ``defender_accuracy`` the defended victim's; ``agreement`` the
share of test images where clone and defended victim agree on top-1
(``agreement_undefended``: with the undefended victim); ``l1_distance`` the
mean ``||y' - y||_1`` between defended and undefended answers over the
attacker's queries; ``perturbed_fraction`` the share of those answers the
defense changed (some entry moved by more than ``1e-6``). Optional per-run
fields: ``recovered_l1``, ``answers_l1`` and ``resolved_fraction`` for attacks
that estimate the victim's posteriors from the answers
(:func:`keras_dcp.experiments.runner.recovery_report`); ``thief_defense_params``
(``beta``, ``gamma``, ``tau``) and ``thief_estimated`` for defense-aware
attacks: the parameters they used, given or estimated from the answers
(:func:`keras_dcp.experiments.runner.belief_report`).
"""

from __future__ import annotations

import json
import math
import os
import tempfile

#: Fields every run has, with their types.
RUN_FIELDS = {
    "defense": str,
    "params": dict,
    "attack": str,
    "budget": int,
    "defender_accuracy": float,
    "attacker_accuracy": float,
    "agreement": float,
    "l1_distance": float,
    "perturbed_fraction": float,
    "seconds": float,
}
#: Fields the victim record has.
VICTIM_FIELDS = {"dataset": str, "accuracy": float}
#: Run fields that are shares in [0, 1].
FRACTION_FIELDS = ("defender_accuracy", "attacker_accuracy", "agreement", "perturbed_fraction")


def _check_type(where, key, value, kind):
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ValueError(f"{where}: {key!r} must be a {kind.__name__}; got {value!r}.")


def validate_results(results):
    """Check ``results`` follows the schema; return it. Raises ValueError naming the bad field."""
    if not isinstance(results, dict):
        raise ValueError(f"Results must be a dict; got {type(results).__name__}.")
    for key in ("victim", "runs"):
        if key not in results:
            raise ValueError(f"Results lack {key!r}.")
    victim = results["victim"]
    if not isinstance(victim, dict):
        raise ValueError("'victim' must be a dict.")
    for key, kind in VICTIM_FIELDS.items():
        if key not in victim:
            raise ValueError(f"victim: missing {key!r}.")
        _check_type("victim", key, victim[key], kind)
    if not isinstance(results["runs"], list):
        raise ValueError("'runs' must be a list.")
    for index, run in enumerate(results["runs"]):
        where = f"runs[{index}]"
        if not isinstance(run, dict):
            raise ValueError(f"{where} must be a dict.")
        for key, kind in RUN_FIELDS.items():
            if key not in run:
                raise ValueError(f"{where}: missing {key!r}.")
            _check_type(where, key, run[key], kind)
        for key in FRACTION_FIELDS:
            if not 0.0 <= run[key] <= 1.0:
                raise ValueError(f"{where}: {key!r} must be in [0, 1]; got {run[key]!r}.")
        if run["l1_distance"] < 0 or run["l1_distance"] > 2.0 + 1e-6:
            raise ValueError(f"{where}: 'l1_distance' must be in [0, 2]; got {run['l1_distance']!r}.")
    return results


def save_results(results, path):
    """Validate and write ``results`` as indented JSON (parent folders are created).

    Written to a temporary file beside ``path`` and moved into place, so an
    existing file is never left half-written.
    """
    validate_results(results)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".results-", suffix=".json", dir=directory)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(results, stream, indent=2)
            stream.write("\n")
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def load_results(path):
    """Read and validate a results JSON."""
    with open(path) as handle:
        return validate_results(json.load(handle))
