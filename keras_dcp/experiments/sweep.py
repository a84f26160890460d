"""Defense grids for ``--sweep``: ``"dcp:beta=0.3/0.5/0.7,gamma=0.2"`` -> one spec per setting."""

from __future__ import annotations

import itertools

from keras_dcp.defenses.registry import parse_spec

#: Grid used when a sweep names a defense without values. DCP ties
#: ``tau = beta`` (the reference sweep); ``beta > 1`` makes the detector fire
#: on every row (``tau`` is capped at 1).
DEFAULT_GRIDS = {
    "dcp": "dcp:beta=0.3/0.5/0.7/0.9,gamma=0.2",
    "rs": "rs:beta=0.1/0.3/0.6/1.0,gamma=0.2",
    "rounding": "rounding:decimals=3/2/1",
    "topk": "topk:k=3/2/1",
    "toplabel": "toplabel",
    # MAD's l1 budgets (default surrogate). AM has no default grid: it needs model=PATH.
    "mad": "mad:eps=0.25/0.5/1.0/2.0",
}


def expand_sweep(spec):
    """Expand a sweep spec into plain defense specs (the cartesian product of the lists).

    ``"dcp:beta=0.5/0.7,gamma=0.1/0.2"`` gives four specs; a bare name
    (``"dcp"``) uses :data:`DEFAULT_GRIDS`. Values are separated by ``/``
    (``,`` separates parameters). Every expanded spec is checked with
    :func:`keras_dcp.defenses.registry.parse_spec`; an empty value
    (``beta=0.3//0.5``) is an error, never silently dropped.

    Returns:
        A list of spec strings such as ``"dcp:beta=0.5,gamma=0.1"``.
    """
    text = spec.strip()
    name, _, args = text.partition(":")
    name = name.strip().lower()
    if not args.strip() and name in DEFAULT_GRIDS:
        text = DEFAULT_GRIDS[name]
        name, _, args = text.partition(":")
    keys, choices = [], []
    for item in filter(None, (part.strip() for part in args.split(","))):
        key, eq, values = item.partition("=")
        if not eq or not values.strip():
            raise ValueError(f"Sweep argument {item!r} must look like key=v1/v2/...")
        values = [v.strip() for v in values.split("/")]
        if not all(values):
            raise ValueError(f"Sweep argument {item!r} has an empty value; separate values with one '/'.")
        keys.append(key.strip())
        choices.append(values)
    specs = []
    for combo in itertools.product(*choices):
        setting = name + (":" + ",".join(f"{k}={v}" for k, v in zip(keys, combo)) if keys else "")
        parse_spec(setting)
        specs.append(setting)
    return specs


def defense_specs(defenses=None, sweeps=None, default=("none", "dcp")):
    """The defense settings to run: ``defenses`` plus every sweep's grid, ``none`` first, no repeats.

    >>> defense_specs(["dcp:beta=0.5"], ["rs:beta=0.1/0.3"])
    ['none', 'dcp:beta=0.5', 'rs:beta=0.1', 'rs:beta=0.3']
    """
    specs = list(defenses or [])
    for sweep in sweeps or []:
        specs.extend(expand_sweep(sweep))
    if not specs:
        specs = list(default)
    normalized = []
    for spec in ["none"] + specs:
        key = spec.strip()
        if key.lower() == "none":
            key = "none"
        if key not in normalized:
            normalized.append(key)
    return normalized
