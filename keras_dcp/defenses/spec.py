"""Defense specs as text (``"dcp:beta=0.7,gamma=0.2"``), for the CLI and the runner."""

from __future__ import annotations

from keras_dcp.defenses.deception import DeceptionLayer
from keras_dcp.defenses.reverse_sigmoid import ReverseSigmoid
from keras_dcp.defenses.rounding import Rounding
from keras_dcp.defenses.top_k import TopK
from keras_dcp.defenses.top_label import TopLabel

#: Spec name -> layer class. ``none`` means no defense.
DEFENSES = {
    "dcp": DeceptionLayer,
    "rs": ReverseSigmoid,
    "rounding": Rounding,
    "toplabel": TopLabel,
    "topk": TopK,
}


def _parse_value(text):
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"Cannot read value {text!r} in a defense spec (numbers, true/false, none).") from None


def parse_spec(spec):
    """``"dcp:beta=0.7,gamma=0.2"`` -> ``("dcp", {"beta": 0.7, "gamma": 0.2})``."""
    name, _, args = spec.strip().partition(":")
    name = name.strip().lower()
    if name != "none" and name not in DEFENSES:
        raise ValueError(f"Unknown defense {name!r}; choose from none, {', '.join(DEFENSES)}.")
    params = {}
    for item in filter(None, (part.strip() for part in args.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"Defense spec argument {item!r} must look like key=value.")
        params[key.strip().replace("-", "_")] = _parse_value(value)
    if name == "none" and params:
        raise ValueError("Defense 'none' takes no arguments.")
    return name, params


def build_defense(spec):
    """A defense layer from a spec string, or None for ``"none"``.

    Unknown argument names raise a ValueError listing the valid ones.
    """
    name, params = parse_spec(spec)
    if name == "none":
        return None
    cls = DEFENSES[name]
    unknown = sorted(set(params) - set(cls._config_keys))
    if unknown:
        valid = ", ".join(cls._config_keys) or "none"
        raise ValueError(f"Unknown argument(s) {', '.join(unknown)} for defense {name!r}; valid: {valid}.")
    return cls(**params)


def describe(layer):
    """``(name, params)`` of a defense layer, the inverse of :func:`build_defense`."""
    if layer is None:
        return "none", {}
    for name, cls in DEFENSES.items():
        if type(layer) is cls:
            return name, {key: getattr(layer, key) for key in cls._config_keys}
    return type(layer).__name__, {}
