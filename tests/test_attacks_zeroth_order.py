"""MAZE and DFME: the zeroth-order gradient estimator, the losses, the generator, query accounting."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dcp import attacks, models
from keras_dcp.attacks import _testing
from keras_dcp.attacks.disagreement import (
    VICTIM_FLOOR,
    centered_log,
    kl_per_sample,
    kl_to_logits_per_sample,
    l1_logits_per_sample,
    l1_to_logits_per_sample,
    log_softmax,
    logits_model,
)
from keras_dcp.attacks.generator import make_generator, to_images
from keras_dcp.attacks.gradient_estimation import unit_directions, zeroth_order_gradient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (4, 4, 3)  # d = 48


def _toy_models(num_classes=5):
    """A differentiable victim and clone: linear-softmax models with different seeded weights."""
    keras.utils.set_random_seed(3)
    victim = _testing.make_mlp(SHAPE, num_classes, hidden=16)
    clone = _testing.make_mlp(SHAPE, num_classes, hidden=16)
    victim.set_weights([w * 3.0 for w in victim.get_weights()])
    return victim, clone


def _cosines(a, b):
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("attack_cls", [attacks.MAZE, attacks.DFME])
@pytest.mark.parametrize("num_directions, min_cosine", [(10, 0.25), (100, 0.7)])
def test_estimate_points_along_the_true_gradient(attack_cls, num_directions, min_cosine):
    """Through a metered BlackBox, as in the attack; compare with autodiff through both models.

    For unit directions ``E[cos] ~ sqrt(m / (m + d))``: 0.42 for m = 10 and 0.82 for m = 100 at
    d = 48, while a random direction has ``|cos| ~ 1/sqrt(d) = 0.14``.
    """
    victim_model, clone = _toy_models()
    attack = attack_cls(lambda: clone, verbose=0)
    victim = attacks.BlackBox(victim_model)
    rng = np.random.default_rng(0)
    x_pre = rng.normal(size=(32, *SHAPE)).astype("float32")

    def objective(points):
        images = to_images(points, victim.input_range)
        teacher = victim.query(images)
        student = clone.predict(images, verbose=0)
        return attack._per_sample_loss(teacher.astype("float64"), student.astype("float64"))

    estimate, base, _ = zeroth_order_gradient(objective, x_pre, num_directions, 1e-3, rng)
    assert victim.queries_used == 32 * (num_directions + 1)

    x_var = tf.Variable(x_pre)
    with tf.GradientTape() as tape:
        images = (tf.tanh(x_var) + 1.0) * 0.5
        per_sample = attack._per_sample_loss(victim_model(images), clone(images), keras.ops)
        total = tf.reduce_sum(per_sample)  # rows are independent: d total / d x_i = grad f_i
    true_gradient = tape.gradient(total, x_var).numpy()
    np.testing.assert_allclose(base, per_sample.numpy(), rtol=1e-3, atol=1e-5)
    cosines = _cosines(estimate, true_gradient)
    assert cosines.mean() > min_cosine
    random_cosines = np.abs(_cosines(rng.normal(size=estimate.shape), true_gradient))
    assert cosines.mean() > 2 * random_cosines.mean()


def test_estimator_is_exact_in_expectation_on_a_linear_function():
    """f(x) = <a, x>: every forward difference is exact, so the mean over many draws converges to a."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=(1, 6)).astype("float32")
    estimate, _, _ = zeroth_order_gradient(lambda p: p @ a[0], np.zeros((1, 6), "float32"), 20000, 1e-3, rng)
    np.testing.assert_allclose(estimate[0], a[0], atol=0.1)


def test_unit_directions_are_on_the_sphere():
    u = unit_directions(np.random.default_rng(0), 3, 5, (2, 2, 3))
    assert u.shape == (3, 5, 2, 2, 3)
    np.testing.assert_allclose(np.linalg.norm(u.reshape(15, -1), axis=1), 1.0, rtol=1e-5)


def test_losses_survive_exact_zeros_and_match_tensorflow():
    teacher = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    student = np.array([[0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    for loss in (kl_per_sample, l1_logits_per_sample):
        values = loss(teacher, student)
        assert values.shape == (2,) and np.all(np.isfinite(values)) and np.all(values > 0)
        tf_values = keras.ops.convert_to_numpy(loss(tf.constant(teacher), tf.constant(student), xp=keras.ops))
        np.testing.assert_allclose(values, tf_values, rtol=1e-6)
        np.testing.assert_allclose(loss(student, student), 0.0, atol=1e-12)
    np.testing.assert_allclose(kl_per_sample(teacher[:1], student[:1]), [-np.log(0.8)], rtol=1e-6)
    # recovered logits are the true ones up to a per-row constant
    logits = np.array([[2.0, -1.0, 0.5]])
    p = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(centered_log(p), logits - logits.mean(), atol=1e-6)


@pytest.mark.parametrize("final_affine", [True, False])
def test_generator_shape_and_range(final_affine):
    keras.utils.set_random_seed(0)
    generator = make_generator(8, (16, 16, 3), width=4, final_affine=final_affine)
    x_pre = keras.ops.convert_to_numpy(generator(np.random.default_rng(0).normal(size=(5, 8)), training=True))
    assert x_pre.shape == (5, 16, 16, 3)
    images = to_images(x_pre, (0.0, 1.0))
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert len(generator.layers[-1].trainable_weights) == (2 if final_affine else 0)
    with pytest.raises(ValueError, match="divisible by 4"):
        make_generator(8, (18, 18, 3))


@pytest.mark.parametrize(
    "attack_cls, kwargs, cost",
    [
        (attacks.MAZE, {"batch_size": 8}, 8 * ((5 - 1) + (1 + 10) * 1)),
        (attacks.MAZE, {"batch_size": 4, "num_directions": 3, "gen_iters": 2, "clone_iters": 2}, 4 * (1 + 4 * 2)),
        (attacks.DFME, {"batch_size": 8}, 8 * (1 * (1 + 1) + 5)),
        (attacks.DFME, {"batch_size": 4, "num_directions": 2, "gen_iters": 2, "clone_iters": 3}, 4 * (2 * 3 + 3)),
    ],
)
def test_query_accounting_follows_the_papers(attack_cls, kwargs, cost):
    data = _testing.digits(16)
    victim = attacks.BlackBox(_testing.digits_victim(16), budget=10_000)
    attack = attack_cls(
        lambda: _testing.make_mlp(hidden=16),
        make_generator=lambda: make_generator(8, (16, 16, 3), width=4),
        latent_dim=8,
        verbose=0,
        **kwargs,
    )
    assert attack.cost_per_iteration() == cost
    budget = 3 * cost + cost // 2
    clone = attack.extract(victim, budget=budget)
    assert attack.iterations == 3
    assert victim.queries_used == 3 * cost == attack.queries_used
    tags = victim.log.counts_by_tag()
    m, n = attack.num_directions, attack.batch_size
    assert tags["gradient-estimate"] == 3 * attack.gen_iters * n * (m + 1)
    assert all(np.isfinite(v).all() for v in attack.history.values())
    probabilities = clone.predict(data["test"][0][:4], verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_maze_replay_and_clone_learn_something():
    """A short MAZE run must move the clone toward the victim on the generator's images."""
    victim_model = _testing.digits_victim(16)
    victim = attacks.BlackBox(victim_model, budget=20_000)
    attack = attacks.MAZE(
        lambda: _testing.make_mlp(hidden=32),
        make_generator=lambda: make_generator(8, (16, 16, 3), width=8),
        batch_size=16,
        latent_dim=8,
        num_directions=2,
        verbose=0,
    )
    attack.extract(victim, budget=16 * (4 + 3) * 40)
    assert attack.iterations == 40
    assert len(attack.history["replay_loss"]) == 40
    first, last = np.mean(attack.history["clone_loss"][:5]), np.mean(attack.history["clone_loss"][-5:])
    assert last < first


def test_data_free_attacks_refuse_query_images_and_tiny_budgets():
    victim = attacks.BlackBox(_testing.digits_victim(16), budget=100)
    attack = attacks.DFME(lambda: _testing.make_mlp(), batch_size=8, verbose=0)
    with pytest.raises(ValueError, match="data-free"):
        attack.extract(victim, np.zeros((4, 16, 16, 3), "float32"))
    with pytest.raises(ValueError, match="buys no iteration"):
        attack.extract(victim, budget=8 * 7 - 1)
    with pytest.raises(attacks.BudgetExceededError):
        attack.extract(victim, budget=101)
    no_shape = attacks.BlackBox(lambda x: np.full((len(x), 2), 0.5, "float32"))
    with pytest.raises(ValueError, match="input_shape"):
        attack.extract(no_shape, budget=1000)
    assert victim.queries_used == 0
    with pytest.raises(ValueError, match="num_directions"):
        attacks.MAZE(lambda: None, num_directions=0)


# --- the clone's side from its logits (the references' choice) --------------------------------


def _zoo_clone():
    return models.small_cnn((16, 16, 3), 10, width=4)


def test_logits_model_shares_the_clone_and_is_none_without_a_softmax_layer():
    keras.utils.set_random_seed(0)
    clone = _zoo_clone()
    logits = logits_model(clone)
    assert [id(v) for v in logits.trainable_variables] == [id(v) for v in clone.trainable_variables]
    x = np.random.default_rng(0).random((3, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.softmax(logits(x))), clone(x), atol=1e-6)
    assert logits_model(_testing.make_mlp()) is None  # Dense(activation="softmax"): no logits to take


def test_logit_losses_keep_a_gradient_where_the_probability_floor_did_not():
    teacher = np.array([[0.6, 0.4 - 2e-12, 1e-12, 1e-12]])
    student_logits = tf.constant([[12.0, 11.0, -20.0, -25.0]])  # softmax ~1e-14 for the last two
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(student_logits)
        new = l1_to_logits_per_sample(tf.constant(teacher, tf.float32), student_logits, xp=keras.ops)
        old = l1_logits_per_sample(tf.constant(teacher, tf.float32), tf.nn.softmax(student_logits), xp=keras.ops)
    new_grad, old_grad = tape.gradient(new, student_logits).numpy(), tape.gradient(old, student_logits).numpy()
    assert np.all(np.abs(new_grad) > 0.1)  # every entry learns: |d/ds_k| = 1/K with the raw logits
    assert np.all(np.abs(old_grad[0, 2:]) < 1e-10)  # clamped at 1e-8: next to nothing to learn there
    # the victim floor is float32-safe and far below 1e-8: a 1e-12 answer keeps its log
    np.testing.assert_allclose(centered_log(teacher, VICTIM_FLOOR)[0, 2] - centered_log(teacher, VICTIM_FLOOR)[0, 0],
                               np.log(1e-12 / 0.6), rtol=1e-6)
    assert np.allclose(l1_to_logits_per_sample(teacher, centered_log(teacher, VICTIM_FLOOR)), 0.0)
    # MAZE: the KL through log-softmax is the KL of the probabilities where nothing is clamped
    logits = np.array([[1.0, -0.5, 2.0], [0.1, 0.2, 0.3]])
    p = np.exp(log_softmax(logits))
    t = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(kl_to_logits_per_sample(t, logits), kl_per_sample(t, p), rtol=1e-9)


@pytest.mark.parametrize("attack_cls", [attacks.MAZE, attacks.DFME])
def test_data_free_attacks_train_a_zoo_clone_through_its_logits(attack_cls):
    victim = attacks.BlackBox(_testing.digits_victim(16), budget=5_000)
    attack = attack_cls(_zoo_clone, make_generator=lambda: make_generator(8, (16, 16, 3), width=4), latent_dim=8,
                        batch_size=8, num_directions=2, verbose=0)
    clone = attack.extract(victim, budget=3 * attack.cost_per_iteration())
    assert attack.student_outputs == "logits" and clone.layers[-1].name == "probabilities"
    assert victim.queries_used == 3 * attack.cost_per_iteration()
    assert all(np.isfinite(v).all() for v in attack.history.values())


JAX_SCRIPT = """
import sys

class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("no tensorflow on this machine")

sys.meta_path.insert(0, NoTensorFlow())
import keras
import numpy as np
from keras_dcp import attacks, models
from keras_dcp.attacks import _testing
from keras_dcp.attacks.generator import make_generator

assert keras.backend.backend() == "jax"
victim_model = _testing.digits_victim(16, epochs=5)
for cls in (attacks.MAZE, attacks.DFME):
    victim = attacks.BlackBox(victim_model, budget=5000)
    attack = cls(lambda: models.small_cnn((16, 16, 3), 10, width=4),
                 make_generator=lambda: make_generator(8, (16, 16, 3), width=4),
                 latent_dim=8, batch_size=8, num_directions=2, verbose=0)
    attack.extract(victim, budget=3 * attack.cost_per_iteration())
    assert victim.queries_used == 3 * attack.cost_per_iteration() == attack.queries_used
    assert attack.student_outputs == "logits"
    assert all(np.isfinite(v).all() for v in attack.history.values())
assert "tensorflow" not in sys.modules
print("RESULT ok")
"""


def test_maze_and_dfme_run_on_jax_without_tensorflow():
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", JAX_SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RESULT ok" in result.stdout
