"""The one registry of attacks: a name (``"knockoff"``) to its class, and what each attack needs.

An attack class registers itself with :func:`register_attack` and declares
what it needs as class attributes (in the spirit of ART's
``_estimator_requirements``), which the experiment runner, the CLI and the
results tables read instead of keeping their own lists:

* ``needs_query_images``: it queries natural images the thief owns
  (KnockoffNets) rather than generating its own (MAZE, DFME);
* ``label_only``: it learns from the top-1 label only, so no defense that keeps
  the top-1 label can stop it;
* ``clone_training_arguments``: which of the runner's clone-training settings
  (``epochs``, ``batch_size``, ``learning_rate``) its constructor takes.

>>> from keras_dcp import attacks
>>> cls = attacks.attack_class("knockoff-label")
>>> cls.__name__, cls.needs_query_images, cls.label_only
('KnockoffNetsLabelOnly', True, True)
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

#: Attack name -> class, filled by :func:`register_attack`.
ATTACKS: dict[str, type] = {}

_Attack = TypeVar("_Attack", bound=type)


def register_attack(name: str) -> Callable[[_Attack], _Attack]:
    """Class decorator: make an attack class reachable by ``name`` (lower case, unique)."""
    key = name.strip().lower()

    def register(cls: _Attack) -> _Attack:
        if key in ATTACKS and ATTACKS[key] is not cls:
            raise ValueError(f"An attack named {key!r} is already registered ({ATTACKS[key]}).")
        ATTACKS[key] = cls
        cls.name = key
        return cls

    return register


def attack_names() -> list[str]:
    """Every registered attack name, in registration order."""
    return list(ATTACKS)


def attack_class(name: str) -> type:
    """The class registered as ``name``; a ValueError listing the names otherwise."""
    key = str(name).strip().lower()
    if key not in ATTACKS:
        raise ValueError(f"Unknown attack {name!r}; choose from {', '.join(ATTACKS)}.")
    return ATTACKS[key]


def build_attack(
    name: str,
    make_clone: Callable,
    *,
    seed: int = 0,
    verbose: int = 0,
    distribute_strategy: Any = None,
    options: dict[str, Any] | None = None,
    **clone_training: Any,
):
    """Instantiate the attack ``name``.

    ``seed``, ``verbose`` and ``distribute_strategy`` go to every attack; the
    ``clone_training`` settings (``epochs``, ``batch_size``,
    ``learning_rate``) only to the attacks that list them in
    ``clone_training_arguments`` (MAZE and DFME keep their own step counts).
    ``options`` adds or overrides attack-specific constructor arguments.
    """
    cls = attack_class(name)
    kwargs = {"seed": seed, "verbose": verbose, "distribute_strategy": distribute_strategy}
    kwargs.update({k: v for k, v in clone_training.items() if k in cls.clone_training_arguments and v is not None})
    kwargs.update(options or {})
    return cls(make_clone, **kwargs)


__all__ = ["ATTACKS", "attack_class", "attack_names", "build_attack", "register_attack"]
