"""Model-stealing attacks against (defended) Keras classifiers.

>>> from keras_dcp import attacks
>>> victim = attacks.BlackBox(protected_model, budget=50_000)          # doctest: +SKIP
>>> clone = attacks.KnockoffNets(make_clone).extract(victim, query_images)  # doctest: +SKIP
>>> attacks.evaluate_clone(clone, victim, x_test, y_test)              # doctest: +SKIP

Every attack is an :class:`Attack` with ``extract(victim, ...) -> clone``,
sees the victim only through the metered :class:`BlackBox`, and is reachable
by name through the registry (:data:`ATTACKS`, :func:`build_attack`). All of
them are plain Keras and run on every Keras backend.
"""

# Registration order is the order names are listed in: KnockoffNets first.
from keras_dcp.attacks.knockoff import KnockoffNets, KnockoffNetsLabelOnly  # isort: skip
from keras_dcp.attacks.maze import MAZE  # isort: skip
from keras_dcp.attacks.dfme import DFME  # isort: skip
from keras_dcp.attacks.adaptive import KnockoffNetsAware, KnockoffNetsInvert, KnockoffNetsSelective  # isort: skip
from keras_dcp.attacks.base import SGDL2, Attack, QueryStore, reference_sgd
from keras_dcp.attacks.blackbox import BlackBox, BudgetExceededError, QueryLog, QueryRecord
from keras_dcp.attacks.evaluate import evaluate_clone
from keras_dcp.attacks.generator import make_generator
from keras_dcp.attacks.gradient_estimation import zeroth_order_gradient
from keras_dcp.attacks.inversion import invert_deception
from keras_dcp.attacks.registry import ATTACKS, attack_class, attack_names, build_attack, register_attack
from keras_dcp.attacks.vectorized import CloneTraining, train_clones
from keras_dcp.attacks.zeroth_order import ZerothOrderAttack

__all__ = [
    "ATTACKS",
    "DFME",
    "MAZE",
    "SGDL2",
    "Attack",
    "BlackBox",
    "BudgetExceededError",
    "CloneTraining",
    "KnockoffNets",
    "KnockoffNetsAware",
    "KnockoffNetsInvert",
    "KnockoffNetsLabelOnly",
    "KnockoffNetsSelective",
    "QueryLog",
    "QueryRecord",
    "QueryStore",
    "ZerothOrderAttack",
    "attack_class",
    "attack_names",
    "build_attack",
    "evaluate_clone",
    "invert_deception",
    "make_generator",
    "reference_sgd",
    "register_attack",
    "train_clones",
    "zeroth_order_gradient",
]
