"""Adaptive thieves (issue 11): the mechanics of inversion, defense-aware training and selection."""

import keras
import numpy as np
import pytest

import keras_dcp
from keras_dcp import attacks, ops
from keras_dcp.attacks import _testing
from keras_dcp.attacks.adaptive import estimate_deception_params, flagged_rows
from keras_dcp.attacks.inversion import ReverseSigmoidMap, invert_deception


def _flagged_posteriors(rows=400, seed=0, tau=0.7):
    y = np.random.default_rng(seed).dirichlet(np.full(10, 0.5), size=rows)
    return y[y.max(axis=1) < tau - 0.01]


def test_reverse_sigmoid_map_and_its_two_branches():
    g = ReverseSigmoidMap(beta=0.7, gamma=0.2)
    assert g.minimum == pytest.approx(0.1469, abs=1e-3) and g.argmin == pytest.approx(0.0324, abs=1e-3)
    y = np.array([1e-6, 0.01, 0.02])
    np.testing.assert_allclose(g.falling_inverse(g(y)), y, rtol=2e-3, atol=1e-6)
    y = np.array([0.05, 0.3, 0.9])
    np.testing.assert_allclose(g.rising_inverse(g(y)), y, rtol=1e-4)
    assert np.isnan(g.falling_inverse(np.array([0.5]))).all()  # above g(0): no small preimage


def test_inversion_recovers_the_posterior_given_the_right_branches():
    y = _flagged_posteriors()
    answers = np.asarray(ops.deception(y.astype("float32"), beta=0.7, gamma=0.2, nu=None), "float64")
    recovered, resolved = invert_deception(answers, 0.7, 0.2, prior=y)  # the prior picks the true branches
    error = np.abs(recovered - y).sum(axis=1)
    assert resolved.mean() > 0.97 and (error < 1e-3).mean() > 0.95
    assert np.abs(answers - y).sum(axis=1).mean() > 0.3  # the answers themselves are far from y


def test_untouched_answers_come_back_as_they_are():
    confident = np.array([[0.95, 0.03, 0.02], [0.2, 0.5, 0.3]])
    answers = np.asarray(ops.deception(confident.astype("float32"), beta=0.7, gamma=0.2))
    assert flagged_rows(answers, 0.7).tolist() == [False, True]
    recovered, resolved = invert_deception(answers, 0.7, 0.2, prior=confident)
    np.testing.assert_array_equal(recovered[0], answers[0])
    np.testing.assert_allclose(recovered[1], confident[1], atol=1e-3)
    assert resolved.all()


def test_the_aware_loss_is_minimised_by_the_true_posterior():
    # CE(D(y), D(q)) is smallest at q = y: training through the known defense can find y.
    y = _flagged_posteriors(rows=200, seed=1).astype("float32")
    answers = ops.deception(y, beta=0.7, gamma=0.2)

    def loss(q):
        defended = ops.deception(q, beta=0.7, gamma=0.2)
        return keras.ops.convert_to_numpy(
            -keras.ops.sum(answers * keras.ops.log(keras.ops.clip(defended, 1e-7, 1.0)), axis=-1)
        )

    rng = np.random.default_rng(2)
    at_truth = loss(y)
    for scale in (0.05, 0.2):
        other = y * np.exp(scale * rng.normal(size=y.shape))
        other = (other / other.sum(axis=1, keepdims=True)).astype("float32")
        assert (at_truth <= loss(other) + 1e-5).all()


def test_parameters_are_estimated_from_the_answers_given_good_posteriors():
    victim = _testing.digits_victim(16)
    posteriors = victim.predict(_testing.digits(16)["query"][0], verbose=0)
    answers = np.asarray(ops.deception(posteriors, beta=0.9, gamma=0.2))
    estimate = estimate_deception_params(answers, posteriors)
    assert (estimate["beta"], estimate["gamma"]) == (0.9, 0.2)
    assert estimate["tau"] == pytest.approx(0.9, abs=0.02)


@pytest.mark.parametrize("name", ["knockoff-aware", "knockoff-invert", "knockoff-selective"])
@pytest.mark.parametrize("defense", [None, "estimate"])
def test_adaptive_attacks_spend_the_budget_and_return_a_clone(name, defense):
    data = _testing.digits(16)
    protected = keras_dcp.protect(_testing.digits_victim(16), keras_dcp.DeceptionLayer(beta=0.9))
    victim = attacks.BlackBox(protected, budget=300)
    attack = attacks.build_attack(name, lambda: _testing.make_mlp(hidden=16),
                                  options={"epochs": 2, "verbose": 0, "defense": defense})
    assert attack.needs_query_images and not attack.label_only and attack.knows_defense
    clone = attack.extract(victim, data["query"][0], budget=300)
    assert victim.queries_used == 300 == attack.queries_used
    report = attacks.evaluate_clone(clone, victim, *data["test"])
    assert report["attacker_accuracy"] > 0.3
    if defense == "estimate":
        assert attack.defense_params["tau"] == pytest.approx(0.9, abs=0.05)


def test_inversion_attack_trains_on_posteriors_closer_than_the_answers():
    data = _testing.digits(16)
    model = _testing.digits_victim(16)
    victim = attacks.BlackBox(keras_dcp.protect(model, keras_dcp.DeceptionLayer(beta=0.9)), budget=600)
    attack = attacks.KnockoffNetsInvert(lambda: _testing.make_mlp(hidden=32), epochs=8, verbose=0,
                                        defense={"beta": 0.9, "gamma": 0.2, "tau": 0.9})
    attack.extract(victim, data["query"][0], budget=600)
    truth = model.predict(data["query"][0][attack.query_indices], verbose=0)
    assert np.abs(attack.recovered - truth).sum(1).mean() < np.abs(attack.answers - truth).sum(1).mean()


def test_bad_knowledge_is_refused():
    with pytest.raises(ValueError, match="defense"):
        attacks.KnockoffNetsAware(lambda: None, defense="dcp")
    with pytest.raises(ValueError, match="labels"):
        attacks.KnockoffNetsInvert(lambda: None, labels="soft")
    with pytest.raises(ValueError, match="tau"):
        attacks.KnockoffNetsSelective(lambda: None, defense={"tau": 2.0})


@pytest.mark.parametrize("defense, estimated", [({"beta": 0.9, "gamma": 0.2, "tau": 0.9}, False), ("estimate", True)])
def test_results_record_what_the_thief_believed(defense, estimated):
    from keras_dcp.experiments.runner import belief_report

    data = _testing.digits(16)
    victim = attacks.BlackBox(keras_dcp.protect(_testing.digits_victim(16), keras_dcp.DeceptionLayer(beta=0.9)),
                              budget=200)
    attack = attacks.KnockoffNetsSelective(lambda: _testing.make_mlp(hidden=16), epochs=1, verbose=0, defense=defense)
    assert belief_report(attack) == {}  # nothing believed before the answers
    attack.extract(victim, data["query"][0], budget=200)
    report = belief_report(attack)
    assert report["thief_estimated"] is estimated
    assert set(report["thief_defense_params"]) == {"beta", "gamma", "tau"}
    if not estimated:
        assert report["thief_defense_params"] == pytest.approx(defense)
    assert belief_report(attacks.build_attack("knockoff", lambda: None)) == {}
