"""Clones trained together (``parallel_clones``, JAX backend) are the clones trained one by one.

The JAX checks run once, in a fresh interpreter with ``KERAS_BACKEND=jax`` and TensorFlow made
unimportable (as on the GPU machine); the tests below read what it printed. The TensorFlow-backend
fallback and the pieces that need no JAX run here.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_dcp import attacks, experiments, models
from keras_dcp.attacks import _testing
from keras_dcp.attacks.vectorized import CloneTraining, precision_policy, with_precision
from keras_dcp.experiments.parallel import CloneBatch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import json, sys

    class NoTensorFlow:  # as on the GPU machine, where TensorFlow is not installed
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ImportError("no tensorflow on this machine")

    sys.meta_path.insert(0, NoTensorFlow())
    import keras
    import numpy as np
    from keras_dcp import attacks, experiments
    from keras_dcp.attacks import _testing, vectorized
    from keras_dcp.attacks.knockoff import KnockoffNets
    from keras_dcp.experiments import parallel

    assert keras.backend.backend() == "jax"
    out = {}
    data = _testing.digits(16)
    x_queries, x_test, y_test = data["query"][0], data["test"][0][:120], data["test"][1][:120]

    def make_clone():
        return _testing.make_small_cnn(width=4)

    # 1. N clones together == the same clones one by one (own seeds, transfer sets, soft and hard targets).
    rng = np.random.default_rng(0)
    seeds, size = [0, 1, 2], 150  # 150 / 64: two full batches and a partial one
    indices = np.stack([rng.permutation(len(x_queries))[:size] for _ in seeds])
    soft = rng.dirichlet(np.ones(10), size=(len(seeds), size)).astype("float32")
    targets = np.stack([soft[0], np.eye(10, dtype="float32")[soft[1].argmax(1)], soft[2]])
    recipe = vectorized.CloneTraining(epochs=1, augment=True)
    together = vectorized.train_clones(make_clone, seeds, x_queries, indices, targets, recipe, verbose=0)
    gaps, loss_gaps = [], []
    for i, seed in enumerate(seeds):
        alone = vectorized.train_clones(make_clone, [seed], x_queries, indices[i:i + 1], targets[i:i + 1], recipe,
                                        verbose=0)
        gaps.append(max(float(np.max(np.abs(np.asarray(a.value) - np.asarray(b.value))))
                        for a, b in zip(together.models[i].weights, alone.models[0].weights)))
        loss_gaps.append(float(np.abs(together.losses[i] - alone.losses[0]).max()))
    keras.utils.set_random_seed(1)
    moved = float(np.max(np.abs(np.asarray(make_clone().weights[0].value) - np.asarray(together.models[1].weights[0].value))))
    probabilities = together.predict(x_test[:50], batch_size=32)
    keras_probabilities = np.stack([m.predict(x_test[:50], verbose=0) for m in together.models])
    out["together"] = {"weight_gaps": gaps, "loss_gaps": loss_gaps, "moved": moved,
                       "predict_gap": float(np.abs(probabilities - keras_probabilities).max()),
                       "seeds_differ": float(np.abs(probabilities[0] - probabilities[2]).max())}

    # 2. One functional step == Keras train_on_batch with the reference optimizer (the fit path's math).
    keras.utils.set_random_seed(5)
    model, twin = make_clone(), make_clone()
    twin.set_weights(model.get_weights())
    steps, batch_targets = 4, soft[0][:128]
    model.compile(optimizer=attacks.reference_sgd(0.1, total_steps=steps), loss=keras.losses.CategoricalCrossentropy())
    step = vectorized.clone_step(twin, vectorized.CloneTraining(epochs=1), 64)
    state = ([v.value for v in twin.trainable_variables], [v.value for v in twin.non_trainable_variables],
             [np.zeros(v.shape, "float32") for v in twin.trainable_variables])
    rates = vectorized.CloneTraining(epochs=1, batch_size=64).learning_rates(64 * steps)
    rows = np.arange(128, dtype="int32")
    step_gaps = []
    for s in range(2):
        model.train_on_batch(x_queries[s * 64:(s + 1) * 64], batch_targets[s * 64:(s + 1) * 64])
        state, _ = step(state, x_queries, rows, batch_targets, rows, None, np.int32(s * 64), np.int32(s), rates[s])
        step_gaps.append(max(float(np.max(np.abs(np.asarray(a) - np.asarray(b.value))))
                             for a, b in zip(state[0] + state[1], model.trainable_variables + model.non_trainable_variables)))
    out["step_vs_train_on_batch"] = step_gaps

    # 3. run_experiment: N together == one by one (same JSON up to rounding), and the answers == sequential's.
    victim = _testing.digits_victim(16)
    captured = {}
    real_train_clones = parallel.train_clones

    def capturing_train_clones(make_clone, seeds, images, indices, targets, **kwargs):
        for row_indices, row_targets in zip(indices, targets):
            captured.setdefault(kwargs.get("precision"), []).append((row_indices.tolist(), row_targets.tolist()))
        return real_train_clones(make_clone, seeds, images, indices, targets, **kwargs)

    parallel.train_clones = capturing_train_clones
    common = dict(defenses=["none", "dcp:beta=0.9,gamma=0.2", "rs:beta=0.5"], attacks=["knockoff", "knockoff-label"],
                  budget=150, epochs=1, seed=0, verbose=0, make_clone=make_clone)
    out["runs"] = {}
    for n in (4, 1):
        results = experiments.run_experiment(victim, x_test, y_test, x_queries, parallel_clones=n, **common)
        experiments.validate_results(results)
        out["runs"][n] = {"runs": results["runs"], "groups": [g["clones"] for g in results["config"]["clone_groups"]]}
    out["parallel_transfer_sets"] = captured["float32"][: len(out["runs"][1]["runs"])]
    parallel.train_clones = real_train_clones

    sequential = []
    real_train = KnockoffNets._train

    def capturing_train(self, clone, x, targets, *args):
        sequential.append((self.query_indices.tolist(), targets.tolist()))  # what fit() would train on

    real_evaluate = attacks.evaluate_clone  # the untrained clones need no scoring: skip their compilation

    def no_evaluation(clone, victim, *args, **kwargs):
        return {"attacker_accuracy": 0.0, "agreement": 0.0, "agreement_undefended": 0.0}

    KnockoffNets._train, attacks.evaluate_clone = capturing_train, no_evaluation
    results = experiments.run_experiment(victim, x_test, y_test, x_queries, **common)
    KnockoffNets._train, attacks.evaluate_clone = real_train, real_evaluate
    out["sequential_transfer_sets"] = sequential
    out["sequential_runs"] = results["runs"]

    # 4. Loosely: a clone trained here is as good as one from KnockoffNets' own fit().
    black_box = attacks.BlackBox(victim, budget=500)
    fit_clone = attacks.KnockoffNets(lambda: _testing.make_mlp(), epochs=8, verbose=0).extract(
        black_box, x_queries, budget=500)
    black_box = attacks.BlackBox(victim, budget=500)
    attack = attacks.KnockoffNets(lambda: _testing.make_mlp(), epochs=8, verbose=0)
    rows_, answers = attack.transfer_set(black_box, x_queries, budget=500)
    trained = vectorized.train_clones(lambda: _testing.make_mlp(), [0], x_queries, rows_[None],
                                      attack.training_targets(answers)[None], vectorized.CloneTraining.of(attack),
                                      verbose=0)
    out["fit_accuracy"] = attacks.evaluate_clone(fit_clone, black_box, *data["test"])["attacker_accuracy"]
    out["vectorized_accuracy"] = attacks.evaluate_clone(trained.models[0], black_box, *data["test"])["attacker_accuracy"]
    bf16 = vectorized.train_clones(lambda: _testing.make_mlp(), [0], x_queries, rows_[None],
                                   attack.training_targets(answers)[None], vectorized.CloneTraining.of(attack),
                                   precision="mixed_bfloat16", verbose=0)
    out["bf16_accuracy"] = attacks.evaluate_clone(bf16.models[0], black_box, *data["test"])["attacker_accuracy"]
    out["bf16_policy"] = bf16.models[0].layers[-1].dtype_policy.name
    assert "tensorflow" not in sys.modules
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def jax_run():
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    line = [ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")][0]
    return json.loads(line[len("RESULT "):])


def test_clones_trained_together_equal_clones_trained_one_by_one(jax_run):
    together = jax_run["together"]
    assert max(together["weight_gaps"]) < 1e-4  # every variable, batch-norm statistics included
    assert max(together["loss_gaps"]) < 1e-5
    assert together["moved"] > 1e-3  # training did something
    assert together["seeds_differ"] > 1e-3  # and each clone is its own
    assert together["predict_gap"] < 1e-5  # the vmapped forward pass is the model's


def test_one_functional_step_is_keras_train_on_batch_with_the_reference_sgd(jax_run):
    assert max(jax_run["step_vs_train_on_batch"]) < 1e-5


def test_run_experiment_together_gives_the_json_of_one_by_one(jax_run):
    together, alone = jax_run["runs"]["4"], jax_run["runs"]["1"]
    assert together["groups"] == [4, 2] and alone["groups"] == [1] * 6
    assert len(together["runs"]) == len(alone["runs"]) == 6
    for a, b in zip(together["runs"], alone["runs"]):
        assert set(a) == set(b)
        for key in a:
            if key in ("attacker_accuracy", "agreement", "agreement_undefended"):
                assert a[key] == pytest.approx(b[key], abs=1.5 / 120)  # at most one test image
            elif key != "seconds":
                assert a[key] == b[key], key


def test_clones_train_on_exactly_the_answers_the_sequential_runner_gets(jax_run):
    parallel, sequential = jax_run["parallel_transfer_sets"], jax_run["sequential_transfer_sets"]
    assert len(parallel) == len(sequential) == 6
    for (p_indices, p_targets), (s_indices, s_targets) in zip(parallel, sequential):
        assert p_indices == s_indices
        assert p_targets == s_targets  # bit for bit
    for together, one_at_a_time in zip(jax_run["runs"]["4"]["runs"], jax_run["sequential_runs"]):
        for key in ("queries_used", "l1_distance", "perturbed_fraction", "defender_accuracy", "params"):
            assert together[key] == one_at_a_time[key], key


def test_vectorized_clone_is_as_good_as_the_fit_one(jax_run):
    assert jax_run["fit_accuracy"] > 0.7 and jax_run["vectorized_accuracy"] > 0.7
    assert abs(jax_run["fit_accuracy"] - jax_run["vectorized_accuracy"]) < 0.1
    assert jax_run["bf16_accuracy"] > 0.7 and jax_run["bf16_policy"] == "mixed_bfloat16"


# --- no JAX needed ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    data = _testing.digits(16)
    return _testing.digits_victim(16), data["test"][0][:100], data["test"][1][:100], data["query"][0]


def test_tensorflow_backend_falls_back_with_a_notice_and_the_sequential_results(tiny, capsys):
    assert keras.backend.backend() == "tensorflow"
    victim, x_test, y_test, x_queries = tiny
    common = dict(defenses=["none", "rs:beta=0.5"], attacks=["knockoff", "knockoff-label"], budget=120, epochs=1,
                  seed=0, verbose=0, make_clone=lambda: _testing.make_mlp(hidden=16))
    sequential = experiments.run_experiment(victim, x_test, y_test, x_queries, **common)
    assert "parallel_clones" not in capsys.readouterr().err
    fallback = experiments.run_experiment(victim, x_test, y_test, x_queries, parallel_clones=4, **common)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs the JAX backend" in err[0] and "one at a time" in err[0]
    assert fallback["config"]["parallel_clones"] is None and "clone_groups" not in fallback["config"]
    for a, b in zip(fallback["runs"], sequential["runs"]):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


def test_only_random_sampling_knockoff_trains_in_parallel(tmp_path):
    def build(name, **options):
        return attacks.build_attack(name, lambda: None, options=options)

    assert CloneBatch.accepts(build("knockoff")) and CloneBatch.accepts(build("knockoff-label"))
    assert not CloneBatch.accepts(build("knockoff", strategy="adaptive"))
    assert not CloneBatch.accepts(build("knockoff", checkpoint_dir=str(tmp_path)))
    assert not CloneBatch.accepts(build("maze")) and not CloneBatch.accepts(build("dfme"))


def test_recipe_follows_the_attack_and_keras_cosine_decay():
    attack = attacks.KnockoffNets(lambda: None, epochs=3, batch_size=32, learning_rate=0.05, augment=True)
    recipe = CloneTraining.of(attack)
    assert (recipe.epochs, recipe.batch_size, recipe.learning_rate, recipe.augment) == (3, 32, 0.05, True)
    rates = recipe.learning_rates(100)  # 4 steps an epoch, 12 in all
    schedule = keras.optimizers.schedules.CosineDecay(0.05, decay_steps=12)
    np.testing.assert_allclose(rates, [float(schedule(t)) for t in range(12)], rtol=1e-6)
    assert len(CloneTraining(lr_schedule="constant").learning_rates(10)) == 10
    with pytest.raises(ValueError, match="epochs"):
        CloneTraining(epochs=0)


def test_precision_builds_bfloat16_clones_and_restores_the_policy(tiny):
    before = keras.config.dtype_policy().name
    model = with_precision(lambda: models.small_cnn((16, 16, 3), 10, width=4), "mixed_bfloat16")()
    assert model.layers[2].dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("probabilities").dtype_policy.name == "float32"  # probabilities stay float32
    assert keras.config.dtype_policy().name == before
    with pytest.raises(ValueError, match="precision"):
        with precision_policy("float16"):
            pass
    victim, x_test, y_test, x_queries = tiny
    with pytest.raises(ValueError, match="parallel_clones"):
        experiments.run_experiment(victim, x_test, y_test, x_queries, parallel_clones=0)
    with pytest.raises(ValueError, match="precision"):
        experiments.run_experiment(victim, x_test, y_test, x_queries, precision="float16")


def test_on_device_augmentation_crops_and_flips():
    jax = pytest.importorskip("jax")
    from keras_dcp.augment import random_crop_flip_jax

    x = np.arange(2 * 4 * 4 * 1, dtype="float32").reshape(2, 4, 4, 1) + 1
    np.testing.assert_array_equal(random_crop_flip_jax(jax.random.PRNGKey(0), x, pad=0, flip=False), x)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    seen = set()
    for key in range(20):
        out = np.asarray(random_crop_flip_jax(jax.random.PRNGKey(key), x, pad=1, flip=True))
        for image, source in zip(out, padded):
            windows = {(t, l, f) for t in range(3) for l in range(3) for f in (0, 1)
                       if np.array_equal(image, (source[t:t + 4, l:l + 4] if not f else source[t:t + 4, l:l + 4][:, ::-1]))}
            assert windows, "every output is a (mirrored) window of the padded image"
            seen |= windows
    assert len({w[:2] for w in seen}) >= 6 and {w[2] for w in seen} == {0, 1}
