"""The int8 fidelity trade-off of ``benchmarks/int8_faithful.py`` as one figure (issue 12; not a test).

Each variant of the JSON lines file is one point per evaluation set: export
time (x) against the defended output's distance to the ORIGINAL float
protected model (left: mean l1, ``mean_b ||D(int8(x)) - D(float(x))||_1``;
right: top-1 agreement), with the goal drawn (l1 <= 0.02, agreement >= 0.99)
and each point labelled with its test accuracy minus the float model's, in
points (goal: within 0.3). The variant ``export --train`` runs by default is
marked.

    python benchmarks/int8_faithful_plot.py int8_faithful.jsonl -o docs/results/int8_faithful.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys

SETS = {"cifar10_test": ("CIFAR-10 test", "o"), "tinyimagenet_queries": ("Tiny-ImageNet queries", "s")}
DEFAULT_VARIANT = "faithful:epochs=2,lr=1e-4"  # what `keras-dcp export --quantize int8 --train` runs


def read_records(path: str, io: str = "int8") -> list[dict]:
    """The variants of ``path`` that have an ``io`` export; one clear error for a missing or corrupt file."""
    if os.path.isdir(path) or not os.path.exists(path):
        raise ValueError(f"{path} is not a results file")
    records = []
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                export = record["exports"][io]
                for key in SETS:
                    float(export[key]["mean_l1"]), float(export[key]["agreement"])
                float(export["accuracy"]), float(record["float_accuracy"]), str(record["variant"])
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path} line {number} is not an int8_faithful record ({error!r})") from None
            records.append(record)
    if not records:
        raise ValueError(f"{path} has no records")
    return records


def meets_goal(record: dict, io: str = "int8") -> bool:
    """Issue 12's goal: accuracy within 0.3 points, and agreement >= 0.99 and l1 <= 0.02 on both sets."""
    export = record["exports"][io]
    return (abs(export["accuracy"] - record["float_accuracy"]) <= 0.003
            and all(export[key]["agreement"] >= 0.99 and export[key]["mean_l1"] <= 0.02 for key in SETS))


def plot(records: list[dict], out: str, io: str = "int8") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for axis, metric, goal, label in ((axes[0], "mean_l1", 0.02, "mean l1 to the float protected model"),
                                      (axes[1], "agreement", 0.99, "top-1 agreement with the float protected model")):
        for key, (name, marker) in SETS.items():
            xs = [r.get("seconds", 0.0) for r in records]
            ys = [r["exports"][io][key][metric] for r in records]
            axis.plot(xs, ys, marker=marker, linestyle="none", markersize=8, label=name)
            for r, x, y in zip(records, xs, ys):
                delta = 100 * (r["exports"][io]["accuracy"] - r["float_accuracy"])
                text = f"{r['variant']}\n({delta:+.2f} pt)" + (" [default]" if r["variant"] == DEFAULT_VARIANT else "")
                axis.annotate(text, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=7)
        axis.axhline(goal, color="green", linestyle="--", label=f"goal ({'<=' if metric == 'mean_l1' else '>='} {goal})")
        axis.set_xlabel("seconds for the variant (export and evaluation, 2-core CPU)")
        axis.set_ylabel(label)
        axis.margins(x=0.3, y=0.15)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    met = [r["variant"] for r in records if meets_goal(r, io)]
    figure.suptitle(f"int8 ({io} I/O) vs the float model the user evaluated; goal met by: "
                    f"{', '.join(met) if met else 'none'}", fontsize=10)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="JSON lines written by benchmarks/int8_faithful.py --json")
    parser.add_argument("-o", "--output", required=True, help="the figure (.png)")
    parser.add_argument("--io", choices=("int8", "float"), default="int8")
    args = parser.parse_args(argv)
    from keras_dcp.cli.common import check_output_file

    try:
        check_output_file(args.output, overwrite=True, flag="-o")
    except ValueError as error:
        parser.error(str(error))
    try:
        records = read_records(args.results, args.io)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    plot(records, args.output, args.io)
    print(f"plot: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
