"""The Attack contract, checked for every attack against the same small victims and budgets.

Adding an attack means adding one entry to ATTACKS (scikit-learn's estimator_checks idea).
"""

import numpy as np
import pytest

import keras_dcp
from keras_dcp import attacks
from keras_dcp.attacks import _testing
from keras_dcp.attacks.generator import make_generator

BUDGET = 300


def _clone():
    return _testing.make_mlp((16, 16, 3), 10, hidden=16)


def _generator():
    return make_generator(8, (16, 16, 3), width=4)


#: name -> (factory, uses query images, expected queries for BUDGET)
ATTACKS = {
    "knockoff-random-soft": (lambda: attacks.KnockoffNets(_clone, epochs=2, verbose=0), True, BUDGET),
    "knockoff-random-hard": (lambda: attacks.KnockoffNets(_clone, labels="hard", epochs=2, verbose=0), True, BUDGET),
    "knockoff-adaptive": (
        lambda: attacks.KnockoffNets(_clone, strategy="adaptive", reward="cert", epochs=2, verbose=0),
        True,
        BUDGET,
    ),
    "knockoff-label-only": (lambda: attacks.KnockoffNetsLabelOnly(_clone, epochs=2, verbose=0), True, BUDGET),
    "maze": (
        lambda: attacks.MAZE(_clone, _generator, batch_size=4, latent_dim=8, num_directions=3, verbose=0),
        False,
        (BUDGET // (4 * (4 + 4))) * 4 * (4 + 4),
    ),
    "dfme": (
        lambda: attacks.DFME(_clone, _generator, batch_size=8, latent_dim=8, verbose=0),
        False,
        (BUDGET // (8 * 7)) * 8 * 7,
    ),
}

VICTIMS = {
    "undefended": lambda model: model,
    "dcp": lambda model: keras_dcp.protect(model, keras_dcp.DeceptionLayer(beta=0.7, gamma=0.2)),
}


@pytest.fixture(scope="module")
def data():
    return _testing.digits(16)


@pytest.fixture(scope="module")
def victim_models():
    """One model per victim kind, built once (protect() and the first compiled call are not free)."""
    return {kind: build(_testing.digits_victim(16)) for kind, build in VICTIMS.items()}


@pytest.mark.parametrize("victim_kind", sorted(VICTIMS))
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_contract(name, victim_kind, data, victim_models):
    factory, uses_images, expected = ATTACKS[name]
    victim = attacks.BlackBox(victim_models[victim_kind], budget=BUDGET + 50)
    attack = factory()
    assert isinstance(attack, attacks.Attack)
    args = (data["query"][0],) if uses_images else ()
    clone = attack.extract(victim, *args, budget=BUDGET)

    # exact, auditable accounting
    assert victim.queries_used == expected == attack.queries_used
    assert victim.log.total == expected
    assert expected <= BUDGET
    # a usable clone: probabilities over the victim's classes
    probabilities = clone.predict(data["test"][0][:8], verbose=0)
    assert probabilities.shape == (8, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    assert isinstance(attack.history, dict) and attack.history
    report = attacks.evaluate_clone(clone, victim, *data["test"])
    assert report["queries_used"] == expected  # evaluation is free


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_refuses_a_budget_the_victim_does_not_have(name, data):
    factory, uses_images, _ = ATTACKS[name]
    victim = attacks.BlackBox(_testing.digits_victim(16), budget=BUDGET - 1)
    args = (data["query"][0],) if uses_images else ()
    with pytest.raises(attacks.BudgetExceededError):
        factory().extract(victim, *args, budget=BUDGET)
    assert victim.queries_used == 0
