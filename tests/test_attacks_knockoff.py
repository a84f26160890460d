"""KnockoffNets (random and adaptive), the label-only attacker and evaluate_clone."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_dcp import attacks
from keras_dcp.attacks import _testing
from keras_dcp.attacks.knockoff import (
    certainty_reward,
    cluster_query_set,
    diversity_reward,
    hard_targets,
    loss_reward,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def digits():
    return _testing.digits(16)


@pytest.fixture(scope="module")
def victim_model():
    return _testing.digits_victim(16)


def make_clone():
    return _testing.make_mlp((16, 16, 3), 10)


def test_clone_of_digits_victim_beats_chance_by_far(digits, victim_model):
    victim = attacks.BlackBox(victim_model, budget=600)
    attack = attacks.KnockoffNets(make_clone, epochs=15, verbose=0)
    clone = attack.extract(victim, digits["query"][0], budget=500)
    report = attacks.evaluate_clone(clone, victim, *digits["test"], undefended=victim_model)
    assert report["attacker_accuracy"] > 0.8  # chance is 0.1
    assert report["agreement"] > 0.8
    assert report["agreement_undefended"] == report["agreement"]  # no defense here
    assert report["queries_used"] == 500 == attack.queries_used == victim.queries_used
    assert set(report) >= {"attacker_accuracy", "agreement", "agreement_undefended", "queries_used"}
    assert len(attack.history["loss"]) == 15
    assert attack.history["loss"][-1] < attack.history["loss"][0]
    # random strategy: distinct images, answers as the victim gave them
    assert len(np.unique(attack.query_indices)) == 500
    np.testing.assert_allclose(
        attack.answers, victim_model.predict(digits["query"][0][attack.query_indices], verbose=0), atol=1e-5
    )


FIXED_ANSWER = np.array([0.7, 0.2, 0.1], "float32")


def _fixed_victim(x):
    """Every image gets the same distribution: soft and hard training must then disagree."""
    return np.tile(FIXED_ANSWER, (len(x), 1))


@pytest.mark.parametrize("labels", ["soft", "hard"])
def test_soft_labels_learn_the_distribution_hard_labels_the_argmax(labels):
    images = np.random.default_rng(1).random((256, 4, 4, 3)).astype("float32")
    victim = attacks.BlackBox(_fixed_victim, budget=256)
    attack = attacks.KnockoffNets(
        lambda: _testing.make_mlp((4, 4, 3), 3, hidden=8), labels=labels, epochs=20, verbose=0, steps_per_execution=4
    )
    clone = attack.extract(victim, images)
    mean_prediction = clone.predict(images, verbose=0).mean(axis=0)
    if labels == "soft":
        np.testing.assert_allclose(mean_prediction, FIXED_ANSWER, atol=0.06)
    else:
        assert mean_prediction[0] > 0.95


def test_label_only_attacker_works_on_a_label_only_victim(digits, victim_model):
    victim = attacks.BlackBox(victim_model, output="label", budget=400)
    attack = attacks.KnockoffNetsLabelOnly(make_clone, epochs=15, verbose=0)
    assert attack.labels == "hard"
    clone = attack.extract(victim, digits["query"][0])
    report = attacks.evaluate_clone(clone, victim, *digits["test"])
    assert report["attacker_accuracy"] > 0.7
    assert victim.queries_used == 400  # budget defaults to what the victim allows
    with pytest.raises(ValueError, match="hard labels"):
        attacks.KnockoffNetsLabelOnly(make_clone, labels="soft")


def test_hard_targets_are_one_hot_of_argmax():
    answers = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]], "float32")
    np.testing.assert_array_equal(hard_targets(answers), [[0, 1, 0], [1, 0, 0]])


@pytest.mark.parametrize("bandit_step, rate", [("constant", 0.5), ("inverse_count", 0.05)])
def test_adaptive_bandit_prefers_the_rewarding_arm(bandit_step, rate):
    """Arm 1's images get confident answers, arm 0's uniform ones: the cert reward must favour arm 1."""
    rng = np.random.default_rng(0)
    images = rng.random((400, 4, 4, 3)).astype("float32")
    arms = np.repeat([0, 1], 200)
    rng.shuffle(arms)

    lookup = {images[i].tobytes(): arms[i] for i in range(len(images))}

    def victim_fn(x):
        out = np.full((len(x), 4), 0.25, "float32")
        for row, image in enumerate(x):
            if lookup[image.tobytes()] == 1:
                out[row] = [0.97, 0.01, 0.01, 0.01]
        return out

    victim = attacks.BlackBox(victim_fn, budget=150)
    attack = attacks.KnockoffNets(
        lambda: _testing.make_mlp((4, 4, 3), 4, hidden=8),
        strategy="adaptive",
        reward="cert",
        bandit_learning_rate=rate,  # ignored by the inverse-count step
        bandit_step=bandit_step,
        epochs=1,
        verbose=0,
    )
    attack.extract(victim, images, query_labels=arms)
    assert victim.queries_used == 150 == attack.queries_used
    assert attack.arm_counts.sum() == 150
    assert attack.arm_counts[1] > 2 * attack.arm_counts[0]
    assert attack.arm_probabilities[1] > 0.9
    np.testing.assert_array_equal(np.bincount(arms[attack.query_indices], minlength=2), attack.arm_counts)
    assert len(np.unique(attack.query_indices)) == 150  # never the same image twice


def test_inverse_count_step_is_arts_update():
    """ART's KnockoffNets: H(a) += (r - rbar)(1 - pi(a)) / N(a), H(a') -= (r - rbar) pi(a') / N(a)."""
    from keras_dcp.attacks.bandit import GradientBandit

    rng = np.random.default_rng(0)
    bandit = GradientBandit(4, step="inverse_count")
    h, n, mean, t = np.zeros(4), np.zeros(4), 0.0, 0
    for _ in range(50):
        arm, reward = int(rng.integers(4)), float(rng.normal(loc=0.3))
        probs = np.exp(h) / np.exp(h).sum()
        t += 1
        mean += (reward - mean) / t
        n[arm] += 1
        for other in range(4):
            sign = (1 - probs[other]) if other == arm else -probs[other]
            h[other] += (reward - mean) / n[arm] * sign
        bandit.update(arm, reward)
    np.testing.assert_allclose(bandit.preferences, h, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(bandit.counts, n)
    constant = GradientBandit(4, step="constant", learning_rate=0.05)
    constant.update(2, 1.0), constant.update(1, 0.0)
    assert constant.preferences[2] > 0 > constant.preferences[1]  # the original rule, alpha 0.05
    with pytest.raises(ValueError, match="bandit_step"):
        attacks.KnockoffNets(make_clone, bandit_step="ucb")


@pytest.mark.parametrize("reward", ["div", "loss", "all"])
def test_adaptive_rewards_spend_the_budget_exactly(digits, victim_model, reward):
    victim = attacks.BlackBox(victim_model, budget=1000)
    attack = attacks.KnockoffNets(make_clone, strategy="adaptive", reward=reward, epochs=1, verbose=0, num_arms=5)
    clone = attack.extract(victim, digits["query"][0], budget=61)  # not a multiple of the round size
    assert victim.queries_used == 61 == len(attack.rewards) == attack.arm_counts.sum()
    assert len(attack.arm_counts) == 5  # k-means arms without query_labels
    assert np.all(np.isfinite(attack.rewards))
    assert clone.predict(digits["test"][0][:2], verbose=0).shape == (2, 10)


def test_reward_functions():
    answers = np.array([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2]], "float32")
    np.testing.assert_allclose(certainty_reward(answers), [0.5, 0.0], atol=1e-6)
    recent = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert diversity_reward(np.array([0.0, 1.0, 0.0]), recent) == pytest.approx(1.0)
    assert diversity_reward(np.array([1.0, 0.0, 0.0]), recent) == pytest.approx(0.0)
    assert diversity_reward(np.array([1.0, 0.0, 0.0]), np.zeros((0, 3))) == 0.0
    np.testing.assert_allclose(loss_reward(answers[:1], answers[:1]), [-(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1))], rtol=1e-5)


def test_clusters_are_seeded_and_sized(digits):
    x = digits["query"][0][:200]
    first = cluster_query_set(x, 6, seed=3)
    np.testing.assert_array_equal(first, cluster_query_set(x, 6, seed=3))
    assert first.shape == (200,) and set(np.unique(first)) == set(range(6))


def test_budget_checks_happen_before_any_query(digits, victim_model):
    victim = attacks.BlackBox(victim_model, budget=100)
    attack = attacks.KnockoffNets(make_clone, epochs=1, verbose=0)
    with pytest.raises(attacks.BudgetExceededError, match="100 left"):
        attack.extract(victim, digits["query"][0], budget=101)
    with pytest.raises(ValueError, match="exceeds the 50 query images"):
        attacks.KnockoffNets(make_clone, verbose=0).extract(
            attacks.BlackBox(victim_model), digits["query"][0][:50], budget=51
        )
    with pytest.raises(ValueError, match="BlackBox"):
        attack.extract(victim_model, digits["query"][0])
    with pytest.raises(ValueError, match="dtype uint8"):
        attack.extract(victim, (digits["query"][0] * 255).astype("uint8"))
    assert victim.queries_used == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"strategy": "greedy"}, "strategy"),
        ({"labels": "logits"}, "labels"),
        ({"reward": "fun"}, "reward"),
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"distribute_strategy": "mirrored"}, "distribute_strategy"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        attacks.KnockoffNets(make_clone, **kwargs)


def test_a_distribution_strategy_in_strategy_gets_a_pointer():
    class FakeStrategy:
        def scope(self):
            return None

    with pytest.raises(ValueError, match="distribute_strategy="):
        attacks.KnockoffNets(make_clone, strategy=FakeStrategy())


def test_sgd_weight_decay_is_coupled_and_serializable():
    variable = keras.Variable(np.ones((1,), "float32"))
    optimizer = attacks.SGDL2(l2=0.5, learning_rate=0.1, momentum=0.0)
    optimizer.apply_gradients([(keras.ops.zeros((1,)), variable)])
    # g = 0 + 0.5 * 1, w = 1 - 0.1 * 0.5
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), [0.95], rtol=1e-6)
    restored = attacks.SGDL2.from_config(optimizer.get_config())
    assert restored.l2 == 0.5 and restored.nesterov is False


def test_evaluate_clone_uses_no_budget(digits, victim_model):
    victim = attacks.BlackBox(victim_model, budget=5)
    victim.query(digits["query"][0][:5])
    report = attacks.evaluate_clone(victim_model, victim, *digits["test"], undefended=victim_model)
    assert report["queries_used"] == 5 == victim.queries_used
    assert len(victim.log) == 1
    assert report["agreement"] == 1.0 == report["agreement_undefended"]
    assert report["attacker_accuracy"] == report["victim_accuracy"] > 0.9
    one_hot = np.eye(10)[digits["test"][1]]
    assert attacks.evaluate_clone(victim_model, victim, digits["test"][0], one_hot, undefended=victim_model) == report


def test_knockoff_runs_on_jax_without_tensorflow():
    """The paper-scale GPU machine has JAX and no TensorFlow: block the import and run there."""
    pytest.importorskip("jax")
    script = textwrap.dedent(
        """
        import sys

        class NoTensorFlow:  # an import hook: as on a machine where TensorFlow is not installed
            def find_spec(self, name, path=None, target=None):
                if name == "tensorflow" or name.startswith("tensorflow."):
                    raise ImportError("no tensorflow on this machine")

        sys.meta_path.insert(0, NoTensorFlow())
        import numpy as np
        from keras_dcp import attacks
        from keras_dcp.attacks import _testing
        import keras
        assert keras.backend.backend() == "jax"
        data = _testing.digits(16)
        victim_model = _testing.digits_victim(16, epochs=10)
        victim = attacks.BlackBox(victim_model, budget=300)
        clone = attacks.KnockoffNets(lambda: _testing.make_mlp(), epochs=8, verbose=0).extract(
            victim, data["query"][0], budget=250)
        report = attacks.evaluate_clone(clone, victim, *data["test"])
        attacks.KnockoffNets(lambda: _testing.make_mlp(), strategy="adaptive", epochs=1, verbose=0).extract(
            victim, data["query"][0], budget=50)
        assert "tensorflow" not in sys.modules
        print("RESULT", report["attacker_accuracy"], victim.queries_used)
        """
    )
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = [ln for ln in result.stdout.splitlines() if ln.startswith("RESULT")][0]
    accuracy, used = float(line.split()[1]), int(line.split()[2])
    assert accuracy > 0.7 and used == 300
