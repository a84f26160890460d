"""The experiment runner, its JSON schema, the table, the sweep grammar and the plot."""

import copy
import json

import keras
import numpy as np
import pytest

from keras_dcp import data, experiments, models
from keras_dcp.training import train_classifier


@pytest.fixture(scope="module")
def tiny():
    """A small digits victim at 16x16 (seconds to train) with its test set and queries."""
    x_train, y_train = data.load_digits("train")
    x_test, y_test = data.load_digits("test")
    x_queries, _ = data.load_digits("query")
    x_train, x_test, x_queries = (data.resize_images(x, (16, 16)) for x in (x_train, x_test, x_queries))
    keras.utils.set_random_seed(0)
    victim = models.small_cnn((16, 16, 1), 10, width=8)
    train_classifier(victim, x_train, y_train, epochs=4, batch_size=64, learning_rate=0.05, flip=False, verbose=0)
    return victim, x_test[:150], y_test[:150], x_queries


@pytest.fixture(scope="module")
def results(tiny):
    victim, x_test, y_test, x_queries = tiny
    return experiments.run_experiment(
        victim, x_test, y_test, x_queries,
        defenses=["none", "dcp:beta=0.9,gamma=0.2,preserve_top1=true"],
        attacks=["knockoff", "knockoff-label"], budget=200, epochs=2, seed=0, dataset="digits16", verbose=0,
        make_clone=lambda: models.small_cnn((16, 16, 1), 10, width=4),
    )


def test_results_follow_the_schema(results):
    experiments.validate_results(results)
    assert results["victim"]["dataset"] == "digits16"
    assert len(results["runs"]) == 4
    assert [(r["defense"], r["attack"]) for r in results["runs"]] == [
        ("none", "knockoff"), ("none", "knockoff-label"), ("dcp", "knockoff"), ("dcp", "knockoff-label"),
    ]
    for run in results["runs"]:
        assert run["budget"] == 200 and run["queries_used"] == 200
        assert set(experiments.RUN_FIELDS) <= set(run)
    json.dumps(results)  # serialisable as is


def test_measurements_mean_what_they_say(results, tiny):
    victim, x_test, y_test, _ = tiny
    victim_accuracy = float(np.mean(victim.predict(data.to_float(x_test), verbose=0).argmax(1) == y_test))
    assert results["victim"]["accuracy"] == pytest.approx(victim_accuracy)
    none_runs = [r for r in results["runs"] if r["defense"] == "none"]
    dcp_runs = [r for r in results["runs"] if r["defense"] == "dcp"]
    for run in none_runs:
        assert run["l1_distance"] == 0.0 and run["perturbed_fraction"] == 0.0
        assert run["defender_accuracy"] == pytest.approx(victim_accuracy)
    for run in dcp_runs:
        # beta = tau = 0.9 perturbs the uncertain queries, and preserve_top1 keeps benign accuracy.
        assert run["l1_distance"] > 0.0 and run["perturbed_fraction"] > 0.0
        assert run["defender_accuracy"] == pytest.approx(victim_accuracy)
        assert run["params"]["beta"] == 0.9 and run["params"]["preserve_top1"] is True


def test_label_only_attack_is_blind_to_a_top1_preserving_defense(results):
    label = {r["defense"]: r for r in results["runs"] if r["attack"] == "knockoff-label"}
    # Same seed, same queries, same top-1 answers: the label-only thief trains on identical data.
    assert label["dcp"]["attacker_accuracy"] == pytest.approx(label["none"]["attacker_accuracy"], abs=0.03)


def test_best_response_is_the_strongest_attack_per_setting(results):
    best = {b["defense"]: b for b in results["best_responses"]}
    for defense, entry in best.items():
        runs = [r for r in results["runs"] if r["defense"] == defense]
        assert entry["attacker_accuracy"] == max(r["attacker_accuracy"] for r in runs)
        assert entry["attack"] in {r["attack"] for r in runs if r["attacker_accuracy"] == entry["attacker_accuracy"]}


def test_table_shows_runs_and_best_response(results):
    table = experiments.format_table(results)
    assert "best response" in table
    assert table.count("knockoff-label") >= 2
    assert "dcp(beta=0.9, preserve_top1=True)" in table


def test_plot_writes_a_png(results, tmp_path):
    path = experiments.plot_tradeoff(results, str(tmp_path / "sub" / "plot.png"))
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_schema_rejects_broken_results(results, tmp_path):
    for mutate, message in (
        (lambda r: r["runs"][0].pop("l1_distance"), "l1_distance"),
        (lambda r: r["runs"][1].update(attacker_accuracy=1.5), "attacker_accuracy"),
        (lambda r: r["victim"].pop("accuracy"), "accuracy"),
        (lambda r: r["runs"][0].update(budget="10"), "budget"),
        (lambda r: r.pop("runs"), "runs"),
    ):
        broken = copy.deepcopy(results)
        mutate(broken)
        with pytest.raises(ValueError, match=message):
            experiments.validate_results(broken)
    path = experiments.save_results(results, str(tmp_path / "r.json"))
    assert experiments.load_results(path)["runs"] == results["runs"]


def test_sweep_expands_the_cartesian_product():
    specs = experiments.expand_sweep("dcp:beta=0.5/0.7,gamma=0.1/0.2")
    assert specs == ["dcp:beta=0.5,gamma=0.1", "dcp:beta=0.5,gamma=0.2", "dcp:beta=0.7,gamma=0.1",
                     "dcp:beta=0.7,gamma=0.2"]
    assert len(experiments.expand_sweep("rs")) == 4
    assert experiments.expand_sweep("toplabel") == ["toplabel"]
    with pytest.raises(ValueError, match="key=v1/v2"):
        experiments.expand_sweep("dcp:beta")
    with pytest.raises(ValueError, match="Unknown defense"):
        experiments.expand_sweep("nope:beta=1/2")


def test_runner_refuses_bad_input_before_working(tiny):
    victim, x_test, y_test, x_queries = tiny
    with pytest.raises(ValueError, match="Unknown attack"):
        experiments.run_experiment(victim, x_test, y_test, x_queries, attacks=["jbda"])
    with pytest.raises(ValueError, match="Unknown defense"):
        experiments.run_experiment(victim, x_test, y_test, x_queries, defenses=["shield"])
    with pytest.raises(ValueError, match="exceeds"):
        experiments.run_experiment(victim, x_test, y_test, x_queries, budget=10**6)
    with pytest.raises(ValueError, match="victim takes"):
        experiments.run_experiment(victim, np.zeros((2, 8, 8, 1), np.uint8), y_test[:2], x_queries)
    with pytest.raises(ValueError, match="query images"):
        experiments.run_experiment(victim, x_test, y_test, None)


def test_defense_meter_measures_l1_and_changes(tiny):
    victim = tiny[0]
    import keras_dcp

    protected = keras_dcp.protect(victim, keras_dcp.TopLabel())
    meter = experiments.DefenseMeter(protected, victim)
    x = data.to_float(tiny[3][:32])
    answers = meter(x)
    y = victim.predict(x, verbose=0)
    expected = np.abs(np.eye(10)[y.argmax(1)] - y).sum(axis=1).mean()
    assert meter.l1_distance == pytest.approx(expected, rel=1e-4)
    assert meter.perturbed_fraction == 1.0 and answers.shape == (32, 10)
    meter.recording = False
    meter(x)
    assert meter.count == 32  # evaluation calls are not counted


def _run(defense, attack, budget, clone, params=None, defended=0.9, l1=0.0):
    return {"defense": defense, "params": params or {}, "attack": attack, "budget": budget,
            "defender_accuracy": defended, "attacker_accuracy": clone, "agreement": clone,
            "l1_distance": l1, "perturbed_fraction": 0.5 if l1 else 0.0, "seconds": 1.0}


def test_best_response_and_plot_keep_budgets_apart(tmp_path):
    runs = [
        _run("none", "knockoff", 5000, 0.40), _run("none", "knockoff-label", 5000, 0.35),
        _run("none", "knockoff", 20000, 0.55), _run("none", "knockoff-label", 20000, 0.50),
        _run("dcp", "knockoff", 20000, 0.45, {"beta": 0.5}, l1=0.3),
        _run("dcp", "knockoff-label", 20000, 0.50, {"beta": 0.5}, l1=0.3),
    ]
    results = {"victim": {"dataset": "synthetic", "accuracy": 0.9}, "runs": runs}
    best = experiments.best_responses(runs)
    assert [(b["defense"], b["budget"], b["attack"], b["attacker_accuracy"]) for b in best] == [
        ("none", 5000, "knockoff", 0.40), ("none", 20000, "knockoff", 0.55), ("dcp", 20000, "knockoff-label", 0.50),
    ]
    table = experiments.format_table(results)
    assert "-0.0500" in table  # dcp's best response against none at the same budget, not at 5000
    assert experiments.plot_tradeoff(results, str(tmp_path / "b.png"))
