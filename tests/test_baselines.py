"""MAD and Adaptive Misinformation as deployable defenses: protect, specs, CLI, training, runner, bench model."""

import json
import warnings

import keras
import numpy as np
import pytest

import keras_dcp
from keras_dcp.attacks import _testing
from keras_dcp.cli import main

SHAPE = (8, 8, 1)


@pytest.fixture(scope="module")
def victim_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    keras.utils.set_random_seed(0)
    victim = _testing.make_mlp(SHAPE, 3, hidden=8)
    victim.save(root / "victim.keras")
    keras.utils.set_random_seed(1)
    _testing.make_mlp(SHAPE, 3, hidden=8).save(root / "f_hat.keras")
    _testing.make_mlp(SHAPE, 5, hidden=8).save(root / "five_classes.keras")
    return root


def _queries(n=12, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, *SHAPE)).astype("float32")


def test_mad_default_surrogate_is_the_architecture_with_fresh_weights(victim_file):
    victim = keras.saving.load_model(victim_file / "victim.keras")
    layer = keras_dcp.MAD(eps=0.3)
    protected = keras_dcp.protect(victim, layer)
    assert [type(a) for a in layer.surrogate.layers] == [type(b) for b in victim.layers]
    assert not np.allclose(layer.surrogate.layers[-1].get_weights()[0], victim.layers[-1].get_weights()[0])
    assert not layer.surrogate.trainable  # frozen: part of the served defense
    x = _queries()
    y, y_tilde = victim.predict(x, verbose=0), protected.predict(x, verbose=0)
    assert np.all(np.abs(y_tilde - y).sum(-1) <= 0.3 + 1e-6) and not np.allclose(y_tilde, y)
    assert protected.count_params() == 2 * victim.count_params()


def test_specs_load_second_models_from_paths(victim_file):
    mad = keras_dcp.build_defense(f"mad:eps=0.25,preserve_top1=true,surrogate={victim_file / 'f_hat.keras'}")
    assert isinstance(mad, keras_dcp.MAD) and mad.eps == 0.25 and mad.preserve_top1
    assert isinstance(mad.surrogate, keras.Model)
    am = keras_dcp.build_defense(f"am:tau=0.8,model={victim_file / 'f_hat.keras'}")
    assert isinstance(am.misinformation_model, keras.Model) and am.tau == 0.8 and am.nu == 1000.0
    assert keras_dcp.defenses.describe(am) == ("am", {"tau": 0.8, "nu": 1000.0})
    with pytest.raises(ValueError, match="does not exist"):
        keras_dcp.build_defense(f"am:model={victim_file / 'missing.keras'}")
    with pytest.raises(ValueError, match="Unknown argument"):
        keras_dcp.build_defense("am:surrogate=x.keras")


def test_am_without_a_model_warns_that_it_protects_nothing(victim_file):
    victim = keras.saving.load_model(victim_file / "victim.keras")
    with pytest.warns(UserWarning, match="protects nothing"):
        keras_dcp.protect(victim, keras_dcp.AdaptiveMisinformation(tau=0.5))
    f_hat = keras.saving.load_model(victim_file / "f_hat.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras_dcp.protect(victim, keras_dcp.AdaptiveMisinformation(f_hat, tau=0.5))


def test_second_model_with_other_classes_is_refused(victim_file):
    victim = keras.saving.load_model(victim_file / "victim.keras")
    five = keras.saving.load_model(victim_file / "five_classes.keras")
    with pytest.raises(ValueError, match="must output"):
        keras_dcp.protect(victim, keras_dcp.MAD(five))


def test_protect_refuses_multi_input_models_for_defenses_that_need_the_query():
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    model = keras.Model([a, b], keras.layers.Dense(3, activation="softmax")(keras.layers.Concatenate()([a, b])))
    with pytest.raises(ValueError, match="single-input"):
        keras_dcp.protect(model, keras_dcp.MAD(eps=0.5))


def test_cli_protect_with_mad_and_am_saves_models_that_reload_safely(victim_file, capsys):
    out = victim_file / "mad.keras"
    assert main(["protect", str(victim_file / "victim.keras"), "-o", str(out), "--defense",
                 "mad:eps=0.5", "--from-probabilities"]) == 0
    reloaded = keras.saving.load_model(out, safe_mode=True)
    victim = keras.saving.load_model(victim_file / "victim.keras")
    x = _queries()
    moved = np.abs(reloaded.predict(x, verbose=0) - victim.predict(x, verbose=0)).sum(-1)
    assert np.all(moved <= 0.5 + 1e-6) and moved.max() > 0.1
    out = victim_file / "am.keras"
    assert main(["protect", str(victim_file / "victim.keras"), "-o", str(out), "--defense",
                 f"am:tau=1.0,nu=none,model={victim_file / 'f_hat.keras'}", "--from-probabilities"]) == 0
    f_hat = keras.saving.load_model(victim_file / "f_hat.keras")
    np.testing.assert_allclose(keras.saving.load_model(out, safe_mode=True).predict(x, verbose=0),
                               f_hat.predict(x, verbose=0), atol=1e-6)  # tau = 1 flags every row


def test_train_misinformation_moves_mass_off_the_true_class():
    data = _testing.digits(size=8)
    x, y = data["train"]
    keras.utils.set_random_seed(0)
    f_hat = _testing.make_mlp((8, 8, 3), 10, hidden=32)
    before = float(np.mean(np.take_along_axis(f_hat.predict(x, verbose=0), y[:, None], 1)))
    history = keras_dcp.training.train_misinformation(f_hat, x, y, epochs=3, batch_size=64, augment=False,
                                                      verbose=0)
    after = f_hat.predict(x, verbose=0)
    assert history["loss"][-1] < history["loss"][0]
    assert float(np.mean(np.take_along_axis(after, y[:, None], 1))) < before / 2  # 0.10 -> 0.04 here
    assert np.mean(after.argmax(-1) == y) < 0.05
    f_hat.trainable = False
    with pytest.raises(ValueError, match="trainable"):
        keras_dcp.training.train_misinformation(f_hat, x, y, epochs=1, verbose=0)


def test_misinformation_loss_by_hand():
    y_pred = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], "float32")
    loss = keras.ops.convert_to_numpy(keras_dcp.training.misinformation_loss(np.array([0, 2]), y_pred))
    np.testing.assert_allclose(loss, -np.log(1 - np.array([0.7, 0.8]) + 1e-7), rtol=1e-5)


def test_runner_and_plot_take_mad_and_am(victim_file, tmp_path):
    from keras_dcp.experiments import plot_tradeoff, run_experiment

    data = _testing.digits(size=8)
    x_test, y_test = data["test"]
    keras.utils.set_random_seed(0)
    victim = _testing.make_mlp((8, 8, 3), 10, hidden=16)
    keras_dcp.training.train_classifier(victim, *data["train"], epochs=2, augment=False, verbose=0)
    keras.utils.set_random_seed(1)
    f_hat = _testing.make_mlp((8, 8, 3), 10, hidden=16)
    keras_dcp.training.train_misinformation(f_hat, *data["train"], epochs=2, augment=False, verbose=0)
    f_hat.save(tmp_path / "f_hat.keras")
    results = run_experiment(
        victim, x_test[:100], y_test[:100], data["query"][0][:120],
        defenses=["none", "dcp", "mad:eps=0.5", "mad:eps=1.0", f"am:tau=0.9,model={tmp_path / 'f_hat.keras'}"],
        attacks=["knockoff-label"], budget=120, epochs=1, verbose=0,
    )
    by_defense = {run["spec"]: run for run in results["runs"]}
    assert by_defense["mad:eps=0.5"]["l1_distance"] <= 0.5 + 1e-6
    assert by_defense["mad:eps=0.5"]["params"] == {"eps": 0.5, "preserve_top1": False, "objective": "closed_form"}
    am = by_defense[f"am:tau=0.9,model={tmp_path / 'f_hat.keras'}"]
    assert am["defender_accuracy"] < results["victim"]["accuracy"]  # AM changes top-1 labels it flags
    path = plot_tradeoff(results, str(tmp_path / "tradeoff.png"))
    assert (tmp_path / "tradeoff.png").stat().st_size > 10_000 and path.endswith(".png")


def test_bench_model_json_schema_and_interleaving(victim_file, tmp_path, capsys):
    from keras_dcp.benchmarking import interleaved_order, validate_bench

    out = tmp_path / "bench.json"
    code = main(["bench", "model", "--model", str(victim_file / "victim.keras"), "--defense", "none",
                 "--defense", "dcp", "--defense", "mad:eps=0.5", "--defense", "mad:eps=0.5,objective=jacobian",
                 "--defense", "am:tau=0.7", "--runtime", "keras", "--runtime", "tflite", "--batch", "1",
                 "--batch", "3", "--rounds", "3", "--runs", "2", "--warmup", "1", "--json", str(out)])
    assert code == 0
    results = validate_bench(json.loads(out.read_text()))
    specs = ["none", "dcp", "mad:eps=0.5", "mad:eps=0.5,objective=jacobian", "am:tau=0.7"]
    assert results["settings"]["defenses"] == specs
    models = {row["spec"]: row for row in results["models"]}
    assert models["dcp"]["extra_parameters"] == 0 and models["none"]["extra_parameters"] == 0
    assert models["mad:eps=0.5"]["extra_parameters"] == models["none"]["parameters"]  # a second model
    assert models["am:tau=0.7"]["extra_parameters"] == models["none"]["parameters"]
    assert "no misinformation model" in models["am:tau=0.7"]["note"]  # the untrained stand-in is flagged
    assert models["mad:eps=0.5,objective=jacobian"]["tflite_bytes"] is None
    assert models["mad:eps=0.5"]["tflite_bytes"] > models["dcp"]["tflite_bytes"] > models["none"]["tflite_bytes"]
    rows = {(r["runtime"], r["batch"], r["spec"]): r for r in results["results"]}
    assert len(rows) == 2 * 2 * 5
    assert rows["tflite", 1, "mad:eps=0.5,objective=jacobian"]["status"] == "error"
    ok = rows["keras", 3, "mad:eps=0.5"]
    assert ok["status"] == "ok" and len(ok["round_medians_ms"]) == 3
    assert ok["ms_per_query"] == pytest.approx(ok["median_ms"] / 3)
    assert rows["keras", 1, "none"]["ratio_to_none"] == 1.0 and rows["keras", 1, "dcp"]["ratio_to_dcp"] == 1.0
    assert "litert_tool" in rows["tflite", 3, "none"]
    order = {(group["runtime"], group["batch"]): group["rounds"] for group in results["order"]}
    assert order["keras", 1] == interleaved_order(specs, 3)
    assert order["tflite", 3][1] == ["dcp", "mad:eps=0.5", "am:tau=0.7", "none"]  # rotated, jacobian left out
    assert "median ms" in capsys.readouterr().out
    broken = dict(results, results=[dict(rows["keras", 1, "none"], status="maybe")])
    with pytest.raises(ValueError, match="status"):
        validate_bench(broken)
