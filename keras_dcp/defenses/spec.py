"""Defense specs as text: ``"dcp:beta=0.7,gamma=0.2"`` <-> ``("dcp", {"beta": 0.7, "gamma": 0.2})``.

Only the syntax lives here; which names and arguments exist is the registry's
(:mod:`keras_dcp.defenses.registry`), which parses with these functions.
"""

from __future__ import annotations

from typing import Any


def parse_value(text: str) -> Any:
    """A spec value: ``none``/``null`` -> None, ``true``/``false`` -> bool, else int, float or (quoted-free) text.

    Text values are kept for arguments that take a path (``mad:surrogate=victim.keras``).

    >>> [parse_value(v) for v in ("none", "true", "3", "0.5", "inf", "model.keras")]
    [None, True, 3, 0.5, inf, 'model.keras']
    """
    stripped = text.strip()
    if not stripped:
        raise ValueError("A defense spec value is empty (write key=value).")
    lowered = stripped.lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(stripped)
    except ValueError:
        pass
    try:
        return float(stripped)
    except ValueError:
        return stripped


def split_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"dcp:beta=0.7,gamma=0.2"`` -> ``("dcp", {"beta": 0.7, "gamma": 0.2})``, syntax only.

    Argument names are lower-cased with ``-`` read as ``_``; a key given twice
    or an item without ``=`` raises a ValueError.

    >>> split_spec("DCP:beta=0.7, preserve-top1=true")
    ('dcp', {'beta': 0.7, 'preserve_top1': True})
    """
    if not isinstance(spec, str):
        raise ValueError(f"A defense spec must be a string such as 'dcp:beta=0.7'; got {spec!r}.")
    name, _, args = spec.strip().partition(":")
    name = name.strip().lower()
    if not name:
        raise ValueError(f"Defense spec {spec!r} has no name (e.g. dcp, rs, rounding).")
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in args.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip().lower().replace("-", "_")
        if not eq or not key:
            raise ValueError(f"Defense spec argument {item!r} must look like key=value.")
        if key in params:
            raise ValueError(f"Defense spec {spec!r} gives {key!r} twice.")
        params[key] = parse_value(value)
    return name, params


def format_spec(name: str, params: dict[str, Any] | None = None) -> str:
    """The inverse of :func:`split_spec`: ``("dcp", {"beta": 0.5})`` -> ``"dcp:beta=0.5"``.

    >>> format_spec("dcp", {"beta": 0.5, "nu": None})
    'dcp:beta=0.5,nu=none'
    """
    if not params:
        return name

    def text(value: Any) -> str:
        if value is None:
            return "none"
        if isinstance(value, bool):
            return str(value).lower()
        return repr(value) if isinstance(value, float) else str(value)

    return name + ":" + ",".join(f"{key}={text(value)}" for key, value in params.items())


__all__ = ["format_spec", "parse_value", "split_spec"]
