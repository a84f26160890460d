"""``keras-dcp evaluate`` and ``keras-dcp train-victim`` end to end, through ``keras_dcp.cli.main``."""

import json

import numpy as np
import pytest

from keras_dcp import data, experiments
from keras_dcp.cli import main


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A trained tiny victim (.keras) plus test and query sets as .npz files, all made here."""
    root = tmp_path_factory.mktemp("evaluate")
    x_test, y_test = data.load_digits("test")
    x_queries, _ = data.load_digits("query")
    np.savez(root / "test.npz", x=data.resize_images(x_test, (16, 16))[:120], y=y_test[:120])
    np.savez(root / "queries.npz", x=data.resize_images(x_queries, (16, 16)))
    x_train, y_train = data.load_digits("train")
    np.savez(root / "train.npz", x=data.resize_images(x_train, (16, 16)), y=y_train)
    victim = root / "victim.keras"
    code = main([
        "train-victim", "--dataset", str(root / "train.npz"), "--arch", "small_cnn", "-o", str(victim),
        "--epochs", "3", "--batch-size", "64", "--learning-rate", "0.05", "--no-flip", "--test-split", "none",
        "--quiet",
    ])
    assert code == 0 and victim.exists()
    return root


def test_evaluate_writes_json_table_and_plot(workspace, capsys):
    out, plot = workspace / "out.json", workspace / "out.png"
    code = main([
        "evaluate", "--victim", str(workspace / "victim.keras"), "--dataset", str(workspace / "test.npz"),
        "--queries", str(workspace / "queries.npz"), "--attack", "knockoff", "--attack", "knockoff-label",
        "--defense", "dcp:beta=0.8,gamma=0.2", "--budget", "120", "--epochs", "1", "--json", str(out),
        "--plot", str(plot), "--clone-arch", "small_cnn", "--quiet",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "best response" in printed and "defender acc" in printed
    results = experiments.load_results(str(out))
    assert [(r["defense"], r["attack"]) for r in results["runs"]] == [
        ("none", "knockoff"), ("none", "knockoff-label"), ("dcp", "knockoff"), ("dcp", "knockoff-label"),
    ]
    assert all(r["budget"] == 120 for r in results["runs"])
    assert results["runs"][2]["params"]["beta"] == 0.8
    assert results["victim"]["accuracy"] > 0.3  # the 3-epoch victim learned something
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_evaluate_sweep_runs_the_grid_and_draws_the_plot(workspace):
    out = workspace / "sweep.json"
    code = main([
        "evaluate", "--victim", str(workspace / "victim.keras"), "--dataset", str(workspace / "test.npz"),
        "--queries", str(workspace / "queries.npz"), "--attack", "knockoff-label",
        "--sweep", "dcp:beta=0.5/0.9", "--budget", "64", "--epochs", "1", "--json", str(out), "--quiet",
        "--max-test", "50",
    ])
    assert code == 0
    results = json.loads(out.read_text())
    assert [r["params"].get("beta") for r in results["runs"]] == [None, 0.5, 0.9]
    assert (workspace / "sweep.png").exists()  # the plot path follows --json
    assert results["victim"]["test_images"] == 50


def test_bad_input_gives_clear_errors(workspace, capsys):
    base = ["evaluate", "--victim", str(workspace / "victim.keras"), "--dataset", str(workspace / "test.npz"),
            "--queries", str(workspace / "queries.npz"), "--quiet"]
    assert main(base + ["--defense", "shield"]) == 2
    assert "Unknown defense 'shield'" in capsys.readouterr().err
    assert main(base + ["--budget", "0"]) == 2
    assert "--budget must be >= 1" in capsys.readouterr().err
    missing = ["evaluate", "--victim", str(workspace / "nope.keras"), "--dataset", str(workspace / "test.npz")]
    assert main(missing) == 2
    assert "nope.keras" in capsys.readouterr().err
    assert main(base + ["--budget", "100000", "--epochs", "1"]) == 2
    assert "exceeds" in capsys.readouterr().err
    assert main(base + ["--attack", "jbda"]) == 2
    assert "Unknown attack 'jbda'" in capsys.readouterr().err


def test_train_victim_reports_accuracy_and_refuses_bad_output(workspace, capsys):
    out = workspace / "v2.keras"
    code = main(["train-victim", "--dataset", "digits", "--epochs", "1", "--max-train", "64", "-o", str(out),
                 "--quiet"])
    assert code == 0 and out.exists()
    printed = capsys.readouterr().out
    assert "small_cnn" in printed and "test accuracy" in printed
    assert main(["train-victim", "--dataset", "digits", "-o", str(workspace / "v.h5")]) == 2
    assert ".keras" in capsys.readouterr().err
