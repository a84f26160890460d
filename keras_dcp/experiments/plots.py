"""The trade-off plot: what a defense costs the thief against what it costs benign users."""

from __future__ import annotations

import os

from keras_dcp.experiments.table import setting_label

_LINESTYLES = {"knockoff": "--", "knockoff-label": ":", "maze": "-.", "dfme": (0, (5, 1, 1, 1))}


def _group(runs, key):
    groups = {}
    for run in runs:
        groups.setdefault(key(run), []).append(run)
    return groups


def plot_tradeoff(results, path, title=None):
    """Draw attacker accuracy against defender accuracy and against mean l1; save to ``path``.

    Left panel: x = defender (benign) top-1 accuracy, y = clone accuracy; one
    thin curve per (defense, attack) across the defense's settings, and a
    thick curve per defense for the thief's best response (the highest clone
    accuracy over the attacks at each setting). The undefended victim is the
    star. A good defense moves points down without moving them left. Right
    panel: the same against the mean l1 distance of the answers. Curves use
    the largest budget of the defended runs; runs at other budgets (e.g. an
    undefended budget sweep) are grey crosses labelled with their budget.
    Uses matplotlib's ``Agg`` backend (no display needed).

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_dcp.experiments.runner import best_responses

    all_runs = results["runs"]
    if not all_runs:
        raise ValueError("No runs to plot.")
    # Curves compare settings at one budget: the largest a defended run used.
    defended_budgets = [run["budget"] for run in all_runs if run["defense"] != "none"]
    budget = max(defended_budgets or [run["budget"] for run in all_runs])
    runs = [run for run in all_runs if run["budget"] == budget]
    other_budgets = [run for run in all_runs if run["budget"] != budget]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    defenses = [d for d in dict.fromkeys(run["defense"] for run in runs) if d != "none"]
    color_of = {name: colors[i % len(colors)] for i, name in enumerate(defenses)}
    baseline = [run for run in runs if run["defense"] == "none"]
    best = best_responses(runs)
    best_baseline = [b for b in best if b["defense"] == "none"]

    for axis, x_key, x_label in (
        (axes[0], "defender_accuracy", "defender (benign) top-1 accuracy"),
        (axes[1], "l1_distance", "mean l1 distance of the answers ||y' - y||_1"),
    ):
        for defense in defenses:
            own = [run for run in runs if run["defense"] == defense]
            for attack, attack_runs in _group(own, lambda r: r["attack"]).items():
                # Order by distortion (it grows with the defense's strength), not by x, so a
                # curve follows the sweep even where benign accuracy is flat.
                points = sorted(baseline_for(baseline, attack) + attack_runs, key=lambda r: r["l1_distance"])
                axis.plot(
                    [r[x_key] for r in points], [r["attacker_accuracy"] for r in points],
                    linestyle=_LINESTYLES.get(attack, "-"), marker="o", markersize=3, linewidth=1,
                    color=color_of[defense], alpha=0.8, label=f"{defense} / {attack}",
                )
            own_best = best_baseline + [b for b in best if b["defense"] == defense]
            own_best.sort(key=lambda b: b["l1_distance"])
            axis.plot(
                [b[x_key] for b in own_best], [b["attacker_accuracy"] for b in own_best],
                linestyle="-", marker="s", markersize=5, linewidth=2.5, color=color_of[defense],
                label=f"{defense} / best response",
            )
            for b in own_best:
                if b["defense"] != "none":
                    axis.annotate(
                        setting_label(b["defense"], b["params"]).replace(defense, "", 1).strip("()") or "default",
                        (b[x_key], b["attacker_accuracy"]), fontsize=6, alpha=0.7,
                        textcoords="offset points", xytext=(3, 3),
                    )
        for run in baseline:
            axis.plot(run[x_key], run["attacker_accuracy"], marker="*", markersize=12, color="black",
                      linestyle="none")
            axis.annotate(f"none / {run['attack']}", (run[x_key], run["attacker_accuracy"]), fontsize=7,
                          textcoords="offset points", xytext=(4, -10))
        for run in other_budgets:
            axis.plot(run[x_key], run["attacker_accuracy"], marker="x", markersize=6, color="grey",
                      linestyle="none")
            axis.annotate(f"{setting_label(run['defense'], run['params'])} / {run['attack']} @ {run['budget']}",
                          (run[x_key], run["attacker_accuracy"]), fontsize=6, color="grey",
                          textcoords="offset points", xytext=(4, 2))
        if x_key == "defender_accuracy":
            _widen(axis, MIN_ACCURACY_SPAN)
        axis.set_xlabel(x_label)
        axis.set_ylabel("attacker (clone) top-1 accuracy")
        axis.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        axes[0].legend(handles, labels, fontsize=7, loc="best")
    victim = results["victim"]
    figure.suptitle(
        title or f"{victim.get('architecture', 'victim')} on {victim['dataset']} "
        f"(accuracy {victim['accuracy']:.3f}), budget {budget} queries"
    )
    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


#: Narrowest defender-accuracy axis drawn: a 0.1-point change must not fill the panel.
MIN_ACCURACY_SPAN = 0.04


def _widen(axis, span):
    low, high = axis.get_xlim()
    if high - low < span:
        middle = (low + high) / 2
        low, high = middle - span / 2, middle + span / 2
        if high > 1.005:  # accuracy cannot pass 1: shift the window instead
            low, high = low - (high - 1.005), 1.005
        axis.set_xlim(low, high)


def baseline_for(baseline, attack):
    """The undefended run of ``attack`` (a curve's starting point), as a list of 0 or 1 runs."""
    return [run for run in baseline if run["attack"] == attack]
