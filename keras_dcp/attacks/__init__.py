"""Model-stealing attacks against (defended) Keras classifiers.

>>> from keras_dcp import attacks
>>> victim = attacks.BlackBox(protected_model, budget=50_000)          # doctest: +SKIP
>>> clone = attacks.KnockoffNets(make_clone).extract(victim, query_images)  # doctest: +SKIP
>>> attacks.evaluate_clone(clone, victim, x_test, y_test)              # doctest: +SKIP

Every attack is an :class:`Attack` with ``extract(victim, ...) -> clone`` and
sees the victim only through the metered :class:`BlackBox`.
"""

from keras_dcp.attacks.base import Attack, QueryStore, SGDL2, reference_sgd
from keras_dcp.attacks.blackbox import BlackBox, BudgetExceededError, QueryLog, QueryRecord
from keras_dcp.attacks.evaluate import evaluate_clone
from keras_dcp.attacks.knockoff import KnockoffNets, KnockoffNetsLabelOnly


def __getattr__(name):
    # MAZE and DFME need TensorFlow; import them on first use so the rest of
    # the package also works where only JAX is installed.
    if name in ("MAZE", "DFME", "ZerothOrderAttack", "zeroth_order_gradient", "make_generator"):
        from keras_dcp.attacks import zeroth_order

        return getattr(zeroth_order, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DFME",
    "MAZE",
    "SGDL2",
    "Attack",
    "BlackBox",
    "BudgetExceededError",
    "KnockoffNets",
    "KnockoffNetsLabelOnly",
    "QueryLog",
    "QueryRecord",
    "QueryStore",
    "evaluate_clone",
    "reference_sgd",
]
