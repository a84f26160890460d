"""The Markdown table of benchmarks/adaptive_cifar10.py's JSON lines (issue 11; not a test).

One row per (defense setting, attack), in the order they were run, then the
thief's best response per setting: the highest clone accuracy over the attacks
run against it (which attacks that covers is listed, so a partial grid says so).

    python benchmarks/adaptive_table.py adaptive.jsonl > table.md
"""

from __future__ import annotations

import argparse
import json
import sys


def load_runs(path: str) -> list[dict]:
    """Every run record in ``path`` (JSON lines), in file order."""
    with open(path) as handle:
        return [record for record in map(json.loads, filter(str.strip, handle)) if "attack" in record]


def _cell(value, digits=4):
    return "" if value is None else f"{value:.{digits}f}"


def format_tables(runs: list[dict]) -> str:
    """Two Markdown tables: every run, and the best response per defense setting."""
    from keras_dcp.experiments.table import render_markdown

    every = render_markdown(
        ["defense", "attack", "benign accuracy", "clone accuracy", "clone/victim agreement", "mean l1 of answers",
         "answers changed", "recovered l1"],
        [[run["setting"], run["attack"], _cell(run["defender_accuracy"]), _cell(run["attacker_accuracy"]),
          _cell(run.get("agreement")), _cell(run["l1_distance"]), _cell(run["perturbed_fraction"], 3),
          _cell(run.get("recovered_l1"))] for run in runs])
    rows = []
    for setting in dict.fromkeys(run["setting"] for run in runs):
        cells = [run for run in runs if run["setting"] == setting]
        best = max(cells, key=lambda run: run["attacker_accuracy"])
        rows.append([setting, _cell(best["defender_accuracy"]), f"**{_cell(best['attacker_accuracy'])}**",
                     best["attack"], ", ".join(run["attack"] for run in cells)])
    best_table = render_markdown(["defense", "benign accuracy", "best response (clone accuracy)", "by", "attacks run"],
                                 rows)
    return every + "\n\n" + best_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="the --json file of benchmarks/adaptive_cifar10.py")
    args = parser.parse_args(argv)
    try:
        runs = load_runs(args.results)
        if not runs:
            parser.error(f"{args.results}: no runs")
        table = format_tables(runs)
    except (OSError, ValueError, KeyError, TypeError) as error:
        parser.error(f"{args.results}: not readable as the JSON lines of benchmarks/adaptive_cifar10.py ({error!r})")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
