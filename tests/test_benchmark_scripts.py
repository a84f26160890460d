"""The benchmark scripts' own argument checks and resume logic (no training: they run for hours)."""
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import baselines_cifar10  # noqa: E402

REQUIRED = ["--victim", "v.keras", "--misinformation-out", "f.keras"]


def test_existing_json_needs_overwrite_or_resume(tmp_path, capsys):
    out = tmp_path / "r.json"
    out.write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        baselines_cifar10.parse_args([*REQUIRED, "--json", str(out)])
    assert exit_info.value.code == 2
    assert "--resume" in capsys.readouterr().err
    assert baselines_cifar10.parse_args([*REQUIRED, "--json", str(out), "--resume"]).resume
    assert out.read_text() == "{}"  # nothing touched by parsing


@pytest.mark.parametrize("extra, message", [
    (["--resume", "--overwrite"], "contradict"),
    (["--budget", "0"], "--budget must be >= 1"),
])
def test_contradictions_and_bad_numbers_are_usage_errors(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        baselines_cifar10.parse_args([*REQUIRED, "--json", str(tmp_path / "r.json"), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--json", "--plot", "--plot-best"])
def test_an_output_that_is_a_folder_is_refused(tmp_path, capsys, flag):
    argv = [*REQUIRED, "--json", str(tmp_path / "r.json"), "--resume"]
    argv = [*argv[:-2], str(tmp_path), "--resume"] if flag == "--json" else [*argv, flag, str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        baselines_cifar10.parse_args(argv)
    assert exit_info.value.code == 2
    assert "is a directory" in capsys.readouterr().err


def test_an_output_in_a_missing_folder_and_a_bad_zoom_are_refused(tmp_path, capsys):
    base = [*REQUIRED, "--json", str(tmp_path / "r.json")]
    with pytest.raises(SystemExit):
        baselines_cifar10.parse_args([*base, "--plot", str(tmp_path / "no" / "p.png")])
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        baselines_cifar10.parse_args([*base, "--zoom-above", "1.5"])
    assert "--zoom-above must be in [0, 1]" in capsys.readouterr().err


def test_resume_reads_the_done_cells(tmp_path):
    path = tmp_path / "r.json"
    assert baselines_cifar10.load_previous(str(path)) is None  # nothing yet: a fresh run
    runs = [_baseline_run("none", "knockoff", 0.8, 0.44), _baseline_run("mad:eps=0.5", "knockoff-label", 0.8, 0.4)]
    path.write_text(json.dumps({"victim": {"dataset": "d", "accuracy": 0.8}, "runs": runs, "config": {}}))
    assert baselines_cifar10.load_previous(str(path))["runs"] == runs


@pytest.mark.parametrize("content", ["{not json", '{"runs": [{"spec": "none"}]}', '{"config": {}}', "[]",
                                     '{"victim": {"dataset": "d", "accuracy": 0.8}, "runs": [{"spec": "none", '
                                     '"attack": "knockoff", "defender_accuracy": NaN}]}'])
def test_resume_from_a_corrupt_file_stops_with_one_line(tmp_path, capsys, content):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        baselines_cifar10.load_previous(str(path))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: cannot read {path}") and error.count("\n") == 1
    assert path.read_text() == content


import int8_faithful_plot  # noqa: E402


def _faithful_record(variant, l1, agreement, accuracy=0.81):
    sets = {key: {"agreement": agreement, "mean_l1": l1, "rows": 10} for key in int8_faithful_plot.SETS}
    return {"variant": variant, "float_accuracy": 0.81, "seconds": 100.0,
            "exports": {"int8": {"accuracy": accuracy, **sets}}}


def test_int8_goal_needs_accuracy_and_both_fidelity_bounds():
    assert int8_faithful_plot.meets_goal(_faithful_record("a", 0.01, 0.995))
    assert not int8_faithful_plot.meets_goal(_faithful_record("b", 0.03, 0.995))
    assert not int8_faithful_plot.meets_goal(_faithful_record("c", 0.01, 0.98))
    assert not int8_faithful_plot.meets_goal(_faithful_record("d", 0.01, 0.995, accuracy=0.805))


def test_int8_plot_reads_records_and_refuses_corrupt_lines(tmp_path, capsys):
    good = tmp_path / "r.jsonl"
    good.write_text("\n".join(json.dumps(_faithful_record(v, 0.05, 0.97)) for v in ("ptq", "faithful:epochs=0")) + "\n")
    out = tmp_path / "plot.png"
    assert int8_faithful_plot.main([str(good), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_faithful_record("ptq", 0.05, 0.97)) + "\n{truncated\n")
    with pytest.raises(ValueError, match="line 2 is not an int8_faithful record"):
        int8_faithful_plot.read_records(str(bad))
    capsys.readouterr()
    assert int8_faithful_plot.main([str(tmp_path), "-o", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "x.png").exists()


def _baseline_run(spec, attack, defender, clone):
    name, _, params = spec.partition(":")
    return {"defense": name, "params": dict(p.split("=") for p in params.split(",") if p), "spec": spec,
            "attack": attack, "budget": 100, "defender_accuracy": defender, "attacker_accuracy": clone,
            "agreement": 0.5, "l1_distance": 0.1, "perturbed_fraction": 0.2, "seconds": 1.0}


def test_report_only_needs_no_victim_and_prints_tables_and_plot(tmp_path, capsys):
    from keras_dcp.experiments import best_responses

    runs = [_baseline_run("none", "knockoff", 0.8, 0.44), _baseline_run("none", "knockoff-label", 0.8, 0.39),
            _baseline_run("dcp:beta=0.7", "knockoff", 0.8, 0.39), _baseline_run("dcp:beta=0.7", "knockoff-label", 0.8, 0.40),
            _baseline_run("am:tau=0.5,model=/secret/f.keras", "knockoff", 0.78, 0.30),
            _baseline_run("am:tau=0.5,model=/secret/f.keras", "knockoff-label", 0.78, 0.35),
            _baseline_run("mad:eps=2.0", "knockoff", 0.05, 0.10)]
    results = {"victim": {"dataset": "toy", "accuracy": 0.8, "architecture": "toy"}, "runs": runs,
               "best_responses": best_responses(runs), "config": {}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results))
    plot = tmp_path / "p.png"
    best = tmp_path / "best.png"
    assert baselines_cifar10.main(["--report-only", "--json", str(path), "--plot", str(plot),
                                   "--plot-best", str(best)]) == 0
    out = capsys.readouterr().out
    assert "| am:tau=0.5 | 0.7800 (2.0) | **0.3500** | knockoff-label | -9.0 |" in out
    assert "/secret/" not in out.split("| defense | attack |")[1]  # file paths stay out of the tables
    assert "am:tau=0.5: defender 0.7800, best response 0.3500 (knockoff-label): not dominated" in out
    assert plot.read_bytes()[:4] == b"\x89PNG" and best.read_bytes()[:4] == b"\x89PNG"


def test_training_run_needs_victim_and_report_only_needs_a_file(tmp_path, capsys):
    with pytest.raises(SystemExit):
        baselines_cifar10.parse_args(["--json", str(tmp_path / "r.json")])
    assert "--victim is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        baselines_cifar10.parse_args(["--report-only", "--json", str(tmp_path / "missing.json")])
    assert "needs an existing results file" in capsys.readouterr().err


def test_resume_refuses_a_file_run_with_other_settings(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"runs": [], "config": {"budget": 5000, "epochs": 10, "seed": 0}}))
    args = baselines_cifar10.parse_args([*REQUIRED, "--json", str(path), "--resume", "--budget", "5000", "--epochs", "10"])
    baselines_cifar10.check_same_setup(json.loads(path.read_text()), args)  # the same: fine
    args = baselines_cifar10.parse_args([*REQUIRED, "--json", str(path), "--resume", "--budget", "20000"])
    with pytest.raises(SystemExit) as exit_info:
        baselines_cifar10.check_same_setup(json.loads(path.read_text()), args)
    assert exit_info.value.code == 2
    assert "budget: file 5000, now 20000" in capsys.readouterr().err


def test_report_only_on_a_file_without_runs_is_one_line(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"victim": {"dataset": "d", "accuracy": 0.8}, "runs": [], "config": {}}))
    assert baselines_cifar10.main(["--report-only", "--json", str(path)]) == 2
    assert capsys.readouterr().err.strip().endswith("has no runs")


def test_report_titles_use_the_files_epochs_and_a_zoom_that_hides_all_is_exit_2(tmp_path, capsys, monkeypatch):
    import keras_dcp.experiments as experiments
    from keras_dcp.experiments import best_responses

    runs = [_baseline_run("none", "knockoff", 0.8, 0.44), _baseline_run("dcp:beta=0.7", "knockoff", 0.8, 0.39)]
    results = {"victim": {"dataset": "toy", "accuracy": 0.8}, "runs": runs, "best_responses": best_responses(runs),
               "config": {"budget": 100, "epochs": 7}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results))
    titles = []
    monkeypatch.setattr(experiments, "plot_tradeoff", lambda results, out, title=None: titles.append(title))
    assert baselines_cifar10.main(["--report-only", "--json", str(path), "--plot", str(tmp_path / "p.png")]) == 0
    assert titles and "budget 100, 7 clone epochs" in titles[0]  # not this call's --epochs default (30)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        baselines_cifar10.main(["--report-only", "--json", str(path), "--plot-best", str(tmp_path / "b.png"),
                                "--zoom-above", "0.9"])
    assert exit_info.value.code == 2
    assert "no setting keeps benign accuracy >= 0.9" in capsys.readouterr().err
    assert not (tmp_path / "b.png").exists()


def test_markdown_rows_must_match_the_header():
    from keras_dcp.experiments.table import render_markdown

    assert render_markdown(["a"], []) == "| a |\n|---|"
    with pytest.raises(ValueError, match="2 cells; got 1"):
        render_markdown(["a", "b"], [["only one"]])


import adaptive_table  # noqa: E402


def test_adaptive_table_best_response_and_a_corrupt_file(tmp_path, capsys):
    runs = [dict(_baseline_run("dcp:beta=0.7", attack, 0.81, clone), setting="dcp 0.7")
            for attack, clone in (("knockoff", 0.39), ("knockoff-invert", 0.43))]
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps(run) + "\n" for run in runs))
    assert adaptive_table.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "| dcp 0.7 | 0.8100 | **0.4300** | knockoff-invert | knockoff, knockoff-invert |" in out
    path.write_text(json.dumps(runs[0]) + "\n{cut")
    with pytest.raises(SystemExit) as exit_info:
        adaptive_table.main([str(path)])
    assert exit_info.value.code == 2 and "not readable" in capsys.readouterr().err
