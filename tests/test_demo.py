"""``keras-dcp demo`` at a tiny size: the whole pipeline, offline."""

from keras_dcp import experiments
from keras_dcp.cli import main


def test_demo_runs_offline_and_writes_the_evaluate_schema(tmp_path, capsys):
    out, plot = tmp_path / "demo.json", tmp_path / "demo.png"
    code = main([
        "demo", "--epochs", "2", "--clone-epochs", "1", "--budget", "96", "--max-train", "200",
        "--max-test", "80", "--width", "4", "--json", str(out), "--plot", str(plot), "--quiet",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "best response" in printed and "best response against dcp" in printed
    results = experiments.load_results(str(out))
    assert [(r["defense"], r["attack"]) for r in results["runs"]] == [
        ("none", "knockoff"), ("none", "knockoff-label"), ("dcp", "knockoff"), ("dcp", "knockoff-label"),
    ]
    assert results["victim"]["dataset"] == "digits" and results["victim"]["test_images"] == 80
    assert all(r["budget"] == 96 for r in results["runs"])
    assert results["config"]["queries"] == "sample-photos"
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_demo_rejects_bad_flags(capsys):
    assert main(["demo", "--defense", "none", "--plot", "none"]) == 2
    assert "pick one" in capsys.readouterr().err
    assert main(["demo", "--dataset", "imagenet"]) == 2
    assert "Unknown preset" in capsys.readouterr().err
    assert main(["demo", "--budget", "0"]) == 2
