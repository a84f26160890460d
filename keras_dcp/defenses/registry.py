"""The one registry of defenses: a name (``"dcp"``) to its layer class, and back.

Every way from a name to a defense goes through here: the CLI (``protect``,
``export``, ``evaluate --defense``), the experiment runner, the sweep grids and
the results tables. A defense class registers itself with
:func:`register_defense` and declares its configuration in its public
``params`` attribute (:class:`~keras_dcp.defenses.OutputDefense`).

>>> import keras_dcp
>>> layer = keras_dcp.build_defense("dcp", beta=0.5)
>>> type(layer).__name__, layer.beta, layer.tau
('DeceptionLayer', 0.5, None)
>>> keras_dcp.build_defense("dcp:beta=0.5,gamma=0.1").gamma
0.1
>>> describe(layer)
('dcp', {'beta': 0.5, 'gamma': 0.2, 'tau': None, 'nu': 1000.0, 'l1_budget': None, 'preserve_top1': False})
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

from keras_dcp.defenses.spec import split_spec

#: Spec name -> defense layer class, filled by :func:`register_defense`. ``none`` means no defense.
DEFENSES: dict[str, type] = {}
_NAME_OF: dict[type, str] = {}

_Defense = TypeVar("_Defense", bound=type)


def register_defense(name: str) -> Callable[[_Defense], _Defense]:
    """Class decorator: make a defense layer class reachable by ``name`` (lower case, unique)."""
    key = name.strip().lower()

    def register(cls: _Defense) -> _Defense:
        if key == "none" or (key in DEFENSES and DEFENSES[key] is not cls):
            raise ValueError(f"A defense named {key!r} is already registered ({DEFENSES.get(key)}).")
        if not isinstance(getattr(cls, "params", None), tuple):
            raise ValueError(f"{cls.__name__} must declare its configuration in a `params` tuple.")
        DEFENSES[key] = cls
        _NAME_OF[cls] = key
        return cls

    return register


def defense_names() -> list[str]:
    """Every registered name, ``"none"`` first."""
    return ["none", *DEFENSES]


def defense_class(name: str) -> type:
    """The layer class registered as ``name``; a ValueError listing the names otherwise."""
    key = name.strip().lower()
    if key not in DEFENSES:
        raise ValueError(f"Unknown defense {name!r}; choose from {', '.join(defense_names())}.")
    return DEFENSES[key]


def defense_defaults(name: str) -> dict[str, Any]:
    """``{param: default}`` of a registered defense, read from its constructor (no layer is built)."""
    cls = defense_class(name)
    signature = inspect.signature(cls.__init__).parameters
    return {key: signature[key].default for key in cls.params
            if key in signature and signature[key].default is not inspect.Parameter.empty}


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"dcp:beta=0.7,gamma=0.2"`` -> ``("dcp", {"beta": 0.7, "gamma": 0.2})``, names checked.

    Raises:
        ValueError: for an unknown defense, an argument it does not take, or bad syntax.
    """
    name, params = split_spec(spec)
    _check_params(name, params)
    return name, params


def _check_params(name: str, params: dict[str, Any]) -> None:
    if name == "none":
        if params:
            raise ValueError("Defense 'none' takes no arguments.")
        return
    cls = defense_class(name)
    accepted = spec_arguments(cls)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) or "none"
        raise ValueError(f"Unknown argument(s) {', '.join(unknown)} for defense {name!r}; valid: {valid}.")


def spec_arguments(cls: type) -> tuple[str, ...]:
    """The arguments a spec may give ``cls``: its ``params`` and the named arguments of its ``from_params``.

    ``from_params`` may take arguments that are not part of the config, such
    as a path to a second model (``am:tau=0.5,model=f_hat.keras``).
    """
    extra = []
    factory = getattr(cls, "from_params", None)
    if factory is not None:
        for parameter in inspect.signature(factory).parameters.values():
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                extra.append(parameter.name)
    return tuple(dict.fromkeys([*cls.params, *extra]))


def build_defense(name: str, **params: Any):
    """A defense layer from a name and its parameters, or None for ``"none"``.

    ``name`` may also be a whole spec (``"dcp:beta=0.7"``); keyword
    parameters then override the spec's. The class builds itself with its
    ``from_params`` classmethod when it has one (defenses that load a model
    from a path), else with its constructor, which validates every value.

    Raises:
        ValueError: for an unknown name, an argument the defense does not take,
            or a value it refuses.
    """
    key, spec_params = split_spec(name)
    spec_params.update({k.lower().replace("-", "_"): v for k, v in params.items()})
    _check_params(key, spec_params)
    if key == "none":
        return None
    cls = DEFENSES[key]
    factory = getattr(cls, "from_params", None) or cls
    return factory(**spec_params)


def describe(layer: Any) -> tuple[str, dict[str, Any]]:
    """``(name, params)`` of a defense layer, the inverse of :func:`build_defense` (``("none", {})`` for None)."""
    if layer is None:
        return "none", {}
    name = _NAME_OF.get(type(layer))
    if name is None:
        return type(layer).__name__, {}
    return name, layer.param_values()


__all__ = [
    "DEFENSES",
    "build_defense",
    "defense_class",
    "defense_defaults",
    "defense_names",
    "describe",
    "parse_spec",
    "register_defense",
    "spec_arguments",
]
