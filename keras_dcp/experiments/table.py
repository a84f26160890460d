"""The results as a plain-text table, with each defense setting's best response."""

from __future__ import annotations

from keras_dcp.defenses.registry import defense_defaults


def setting_label(defense, params):
    """``"dcp(beta=0.5, tau=0.5)"``: the defense and its non-default parameters."""
    if defense == "none":
        return "none"
    try:
        defaults = defense_defaults(defense)
    except ValueError:  # a defense this installation does not know (results from elsewhere)
        defaults = {}
    shown = {k: v for k, v in params.items() if defaults.get(k) != v}
    if not shown:
        return defense
    return f"{defense}(" + ", ".join(f"{k}={_number(v)}" for k, v in shown.items()) + ")"


def _number(value):
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _render(header, rows):
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * width for width in widths))
    for row in rows:
        lines.append("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    return "\n".join(lines)


def render_markdown(header: list, rows: list) -> str:
    """A Markdown table: ``header`` then one line per row; cells are written with ``str``.

    >>> print(render_markdown(["a", "b"], [[1, "x"]]))
    | a | b |
    |---|---|
    | 1 | x |
    """
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"Each row needs {len(header)} cells; got {len(row)}: {row!r}")
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def format_table(results):
    """Two tables: every run, then per defense setting the thief's best response.

    The best response is the attack with the highest clone accuracy against
    that setting. A defense that only beats the soft-label attack shows up
    there: its best-response accuracy is the label-only attack's.
    """
    victim = results["victim"]
    lines = [
        f"victim: {victim.get('architecture', '?')} on {victim['dataset']}, "
        f"test accuracy {victim['accuracy']:.4f}"
        + (f" ({victim['test_images']} images)" if "test_images" in victim else "")
    ]
    header = ["defense", "attack", "budget", "defender acc", "clone acc", "agreement", "l1", "perturbed", "seconds"]
    rows = [
        [
            setting_label(run["defense"], run["params"]),
            run["attack"],
            run["budget"],
            f"{run['defender_accuracy']:.4f}",
            f"{run['attacker_accuracy']:.4f}",
            f"{run['agreement']:.4f}",
            f"{run['l1_distance']:.4f}",
            f"{run['perturbed_fraction']:.3f}",
            f"{run['seconds']:.1f}",
        ]
        for run in results["runs"]
    ]
    lines += ["", _render(header, rows)]
    best = results.get("best_responses")
    if best is None:
        from keras_dcp.experiments.runner import best_responses

        best = best_responses(results["runs"])
    budgets = sorted({entry.get("budget") for entry in best}, key=lambda b: (b is None, b))
    undefended = {entry.get("budget"): entry["attacker_accuracy"] for entry in best if entry["defense"] == "none"}
    header = ["defense"] + (["budget"] if len(budgets) > 1 else []) + ["defender acc", "best attack", "best clone acc"]
    if undefended:
        header.append("vs none")
    rows = []
    for entry in best:
        row = [setting_label(entry["defense"], entry["params"])]
        if len(budgets) > 1:
            row.append(entry.get("budget"))
        row += [f"{entry['defender_accuracy']:.4f}", entry["attack"], f"{entry['attacker_accuracy']:.4f}"]
        if undefended:
            reference = undefended.get(entry.get("budget"))
            row.append("" if reference is None else f"{entry['attacker_accuracy'] - reference:+.4f}")
        rows.append(row)
    lines += ["", "best response (the thief keeps the attack that works best):", _render(header, rows)]
    return "\n".join(lines)
