"""DCP against the baselines it is compared with, MAD and Adaptive Misinformation, on CIFAR-10 (not a test).

For a trained CIFAR-10 victim it

1. trains Adaptive Misinformation's model ``f^`` on the victim's training
   images (``keras_dcp.training.train_misinformation``: the victim's
   architecture with fresh weights, loss ``-log(1 - f^(x)_y)``), or loads it
   from ``--misinformation-out`` when that file exists (a cache);
2. runs :func:`keras_dcp.experiments.run_experiment` over ``none``, two DCP
   settings, two MAD budgets ``eps`` (closed form; the default surrogate, the
   victim's architecture with fresh weights, as in the authors' scripts) and
   two AM thresholds ``tau`` (plus any ``--defense``), each attacked by
   soft-label and label-only KnockoffNets with Tiny-ImageNet queries at one
   budget; every defense is saved to the JSON as soon as it is done;
3. writes the results JSON, the table with the thief's best responses, and
   the trade-off plot: DCP, MAD, AM (and RS if asked) on the same axes, defender
   accuracy vs the best-response clone accuracy, and mean l1 distortion.

CPU-scale run (hours on 2 cores; see docs/results/ for the numbers)::

    python benchmarks/baselines_cifar10.py --victim /work/cache/victims/resnet20_cifar10_dev.keras \\
        --budget 20000 --epochs 30 --misinformation-epochs 30 \\
        --misinformation-out /work/cache/victims/resnet20_cifar10_dev_misinformation.keras \\
        --json docs/results/baselines_cifar10.json --plot docs/results/baselines_cifar10.png

Smoke test (a minute)::

    python benchmarks/baselines_cifar10.py --victim /tmp/small_victim.keras --max-train 500 --test-limit 500 \\
        --budget 200 --epochs 1 --misinformation-epochs 1 --misinformation-out /tmp/f_hat.keras \\
        --json /tmp/baselines.json --plot /tmp/baselines.png

Data: ``<--data>/cifar10/{train,test}.npz`` and ``<--data>/tinyimagenet/queries.npz``
(uint8 NHWC; default ``../shared/data`` next to the checkout).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

DEFAULT_DATA = os.path.join(REPO, "..", "shared", "data")
DEFAULT_DCP = ("dcp:beta=0.5,gamma=0.2", "dcp:beta=0.9,gamma=0.2")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--victim", help="the trained CIFAR-10 victim (.keras); not needed with --report-only")
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder with cifar10/ and tinyimagenet/")
    parser.add_argument("--budget", type=int, default=20000, help="queries per attack (default 20000)")
    parser.add_argument("--epochs", type=int, default=30, help="clone training epochs (default 30)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--attack", action="append", help="attacks (default knockoff and knockoff-label)")
    parser.add_argument("--dcp", action="append", help=f"DCP settings (default {' and '.join(DEFAULT_DCP)})")
    parser.add_argument("--mad-eps", default="0.5,1.0", help="MAD l1 budgets, comma separated (default 0.5,1.0)")
    parser.add_argument("--am-tau", default="0.5,0.8", help="AM thresholds, comma separated (default 0.5,0.8)")
    parser.add_argument("--defense", action="append", default=[], help="more defense specs (e.g. rs:beta=0.5)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: print the Markdown tables of --json and draw --plot from it")
    parser.add_argument("--misinformation-out",
                        help="where the misinformation model is cached (.keras): loaded if it exists, "
                        "else trained and saved there")
    parser.add_argument("--misinformation-epochs", type=int, default=30)
    parser.add_argument("--max-train", type=int, help="use only this many training images for f^")
    parser.add_argument("--test-limit", type=int, help="evaluate on this many test images (default all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", required=True, help="the results JSON (rewritten after each defense)")
    parser.add_argument("--plot", help="the trade-off plot (.png)")
    parser.add_argument("--plot-best", help="a second plot (.png): the best responses alone, zoomed on the settings "
                        "that keep at least --zoom-above benign accuracy, each point labelled")
    parser.add_argument("--zoom-above", type=float, default=0.5,
                        help="benign accuracy below which --plot-best leaves settings out (default 0.5)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    parser.add_argument("--resume", action="store_true",
                        help="extend an existing --json: run only the (defense, attack) cells it lacks")
    args = parser.parse_args(argv)
    from keras_dcp.cli.common import check_output_file

    try:
        for flag in ("plot", "plot_best"):
            if getattr(args, flag):
                check_output_file(getattr(args, flag), overwrite=True, flag=f"--{flag.replace('_', '-')}")
        if not args.report_only:
            check_output_file(args.json, overwrite=True, flag="--json")
    except ValueError as error:
        parser.error(str(error))
    if not 0.0 <= args.zoom_above <= 1.0:
        parser.error(f"--zoom-above must be in [0, 1]; got {args.zoom_above}")
    if args.report_only:
        if not os.path.isfile(args.json):
            parser.error(f"--report-only needs an existing results file; --json {args.json} is not one")
        return args
    for flag in ("victim", "misinformation_out"):
        if getattr(args, flag) is None:
            parser.error(f"--{flag.replace('_', '-')} is required (unless --report-only)")
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite contradict each other; pass one")
    if os.path.exists(args.json) and not (args.overwrite or args.resume):
        parser.error(f"--json {args.json} exists; pass --overwrite to replace it or --resume to extend it")
    for flag in ("budget", "epochs", "misinformation_epochs"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1")
    return args


def _load(path, limit=None, seed=0):
    with np.load(path) as data:
        x, y = data["x"], data["y"].astype("int64").reshape(-1)
    if limit is not None and limit < len(x):
        keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:limit])
        x, y = x[keep], y[keep]
    return x, y


def load_previous(path):
    """The results saved by an earlier run at ``path`` (``--resume``), or None when there is none yet."""
    if not os.path.exists(path):
        return None
    from keras_dcp.experiments import load_results

    try:
        results = load_results(path)  # the results schema: every field the tables and plots read
        cells = {(run["spec"], run["attack"]) for run in results["runs"]}
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"error: cannot read {path} as this script's results: {error!r}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"resuming {path}: {len(cells)} cells done", flush=True)
    return results


#: Settings a resumed file must share with this run, or its cells would not be comparable.
RESUME_KEYS = ("budget", "epochs", "batch_size", "learning_rate", "seed")


def check_same_setup(results, args):
    """Exit 2 (one line) when ``--resume`` would mix cells run with other budgets, epochs, rates or seeds."""
    config = results.get("config", {})
    differ = [f"{key}: file {config.get(key)!r}, now {getattr(args, key)!r}" for key in RESUME_KEYS
              if key in config and config[key] != getattr(args, key)]
    if differ:
        print(f"error: --resume {args.json} was run with other settings ({'; '.join(differ)})", file=sys.stderr)
        raise SystemExit(2)


def _setting(run):
    """The run's spec without file paths and keys (``am:tau=0.8,model=/x/f.keras`` -> ``am:tau=0.8``)."""
    spec = run.get("spec") or run["defense"]
    name, _, params = spec.partition(":")
    kept = [p for p in params.split(",") if p and not p.startswith(("model=", "surrogate=", "key="))]
    return name + (":" + ",".join(kept) if kept else "")


def _best_with_specs(results):
    """``results["best_responses"]``, each with the ``spec`` of its runs."""
    specs = {(run["defense"], repr(sorted(run["params"].items()))): run.get("spec") for run in results["runs"]}
    return [dict(best, spec=specs.get((best["defense"], repr(sorted(best["params"].items()))))) for best in
            results["best_responses"]]


def markdown_tables(results):
    """Two Markdown tables: every (defense, attack) cell, and the thief's best response per setting."""
    from keras_dcp.experiments.table import render_markdown

    every = render_markdown(
        ["defense", "attack", "benign accuracy", "clone accuracy", "clone/victim agreement", "mean l1", "answers changed"],
        [[_setting(run), run["attack"], f"{run['defender_accuracy']:.4f}", f"{run['attacker_accuracy']:.4f}",
          f"{run['agreement']:.4f}", f"{run['l1_distance']:.4f}", f"{run['perturbed_fraction']:.3f}"]
         for run in results["runs"]])
    none = [b for b in results["best_responses"] if b["defense"] == "none"]
    rows = []
    for best in _best_with_specs(results):
        cost = 100 * (results["victim"]["accuracy"] - best["defender_accuracy"])
        versus = f"{100 * (best['attacker_accuracy'] - none[0]['attacker_accuracy']):+.1f}" if none else ""
        rows.append([_setting(best), f"{best['defender_accuracy']:.4f} ({cost:.1f})",
                     f"**{best['attacker_accuracy']:.4f}**", best["attack"], versus])
    best_table = render_markdown(["defense", "benign accuracy (cost, points)", "best response", "by", "vs none (points)"],
                                 rows)
    return every + "\n\n" + best_table


def _short(run):
    """A label for a plot: the spec without paths, keys, default gamma or a calibrated threshold."""
    name, _, params = _setting(run).partition(":")
    kept = [p for p in params.split(",") if p and p != "gamma=0.2" and not p.startswith("energy_threshold=")]
    return name + (" " + ",".join(kept) if kept else "")


def plot_best(results, path, above=0.5):
    """Best response (y) against benign accuracy (x), one labelled point per setting with benign accuracy >= above.

    The settings left out (a defense that breaks the model for its users) are
    named in the figure's note, so nothing disappears silently.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = _best_with_specs(results)
    shown = [b for b in entries if b["defender_accuracy"] >= above]
    hidden = [b for b in entries if b["defender_accuracy"] < above]
    if not shown:
        raise ValueError(f"--plot-best: no setting keeps benign accuracy >= {above}; lower --zoom-above")
    colors = {"none": "black", "dcp": "tab:green", "dcp-keyed": "tab:red", "mad": "tab:blue", "am": "tab:orange"}
    figure, axis = plt.subplots(figsize=(9, 5.5))
    xs = [b["defender_accuracy"] for b in shown]
    ys = [b["attacker_accuracy"] for b in shown]
    label_x = max(xs) + 0.25 * (max(xs) - min(xs) + 0.01)
    gap = 0.045 * (max(ys) - min(ys) + 0.01)
    label_y, last = {}, None
    for index in sorted(range(len(shown)), key=lambda i: ys[i]):  # spread the labels so none overlap
        last = ys[index] if last is None else max(ys[index], last + gap)
        label_y[index] = last
    for index, entry in enumerate(shown):
        color = colors.get(entry["defense"], "tab:gray")
        cost = 100 * (results["victim"]["accuracy"] - entry["defender_accuracy"])
        axis.plot(xs[index], ys[index], "o", color=color, markersize=9)
        axis.annotate(f"{_short(entry)}: {ys[index]:.3f} by {entry['attack']}, cost {cost:.1f} pt",
                      (xs[index], ys[index]), xytext=(label_x, label_y[index]), textcoords="data", fontsize=7.5,
                      color=color, va="center", arrowprops={"arrowstyle": "-", "color": color, "alpha": 0.4})
    axis.set_xlim(min(xs) - 0.1 * (max(xs) - min(xs) + 0.01), label_x + 1.2 * (max(xs) - min(xs) + 0.01))
    axis.set_xlabel("defender (benign) top-1 accuracy")
    axis.set_ylabel("thief's best response: clone top-1 accuracy")
    axis.margins(y=0.1)
    axis.grid(alpha=0.3)
    note = f"left out (benign accuracy < {above}): " + ", ".join(
        f"{_setting(b)} ({b['defender_accuracy']:.3f} / {b['attacker_accuracy']:.3f})" for b in hidden) if hidden else ""
    axis.set_title("Lower right is better: the thief gets less while users keep their accuracy" +
                   (f"\n{note}" if note else ""), fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def report(results, args):
    """Print the tables and verdicts of ``results``; draw ``--plot``."""
    from keras_dcp.experiments import format_table, plot_tradeoff

    print(format_table(results))
    print()
    print(markdown_tables(results))
    if args.plot:
        config = results.get("config", {})
        plot_tradeoff(results, args.plot,
                      title=f"DCP vs MAD and AM: {results['victim'].get('architecture', '?')} on CIFAR-10, "
                      f"budget {config.get('budget', results['runs'][0]['budget'])}, "
                      f"{config.get('epochs', '?')} clone epochs")
        print(f"plot: {args.plot}")
    if args.plot_best:
        try:
            print(f"plot: {plot_best(results, args.plot_best, args.zoom_above)}")
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
    for line in verdicts(results):
        print(line)


def misinformation_model(args, victim, x_train, y_train, x_test, y_test):
    """``(f^, record)``: loaded from the cache, or trained on the victim's training images and cached."""
    import keras

    from keras_dcp.model_io import load_keras_model
    from keras_dcp.training import accuracy, train_misinformation

    record = {"path": args.misinformation_out}
    if os.path.exists(args.misinformation_out):
        f_hat = load_keras_model(args.misinformation_out, what="misinformation model")
        record["trained_here"] = False
    else:
        keras.utils.set_random_seed(args.seed)
        f_hat = keras.models.clone_model(victim)  # the victim's architecture, fresh weights
        started = time.perf_counter()
        history = train_misinformation(f_hat, x_train, y_train, epochs=args.misinformation_epochs,
                                       seed=args.seed, verbose=2)
        partial = args.misinformation_out + ".partial.keras"
        f_hat.save(partial)
        os.replace(partial, args.misinformation_out)
        record.update(trained_here=True, epochs=args.misinformation_epochs, train_images=int(len(x_train)),
                      seconds=time.perf_counter() - started, final_loss=float(history["loss"][-1]))
    probabilities = f_hat.predict(x_test.astype("float32") / 255.0, batch_size=256, verbose=0)
    record["test_accuracy"] = float(accuracy(f_hat, x_test, y_test))  # driven toward 0
    record["test_true_class_mass"] = float(np.mean(probabilities[np.arange(len(y_test)), y_test]))
    return f_hat, record


def defense_specs(args):
    specs = ["none", *(args.dcp or DEFAULT_DCP)]
    specs += [f"mad:eps={eps.strip()}" for eps in args.mad_eps.split(",") if eps.strip()]
    specs += [f"am:tau={tau.strip()},model={args.misinformation_out}" for tau in args.am_tau.split(",") if tau.strip()]
    return list(dict.fromkeys(specs + args.defense))


#: The registry names of DCP and its variants, which the baselines are judged against.
DCP_FAMILY = ("dcp", "dcp-keyed")


def verdicts(results):
    """One line per MAD/AM setting: is it dominated by a DCP setting (no less benign accuracy, no higher best response)?"""
    dcp_best = [b for b in _best_with_specs(results) if b["defense"] in DCP_FAMILY]
    lines = []
    for entry in _best_with_specs(results):
        if entry["defense"] not in ("mad", "am"):
            continue
        dominating = [b for b in dcp_best if b["defender_accuracy"] >= entry["defender_accuracy"]
                      and b["attacker_accuracy"] <= entry["attacker_accuracy"]]
        verdict = "not dominated by any DCP setting run here"
        if dominating:
            verdict = f"dominated by {_setting(dominating[0])}"
        lines.append(f"{_setting(entry)}: defender {entry['defender_accuracy']:.4f}, best response "
                     f"{entry['attacker_accuracy']:.4f} ({entry['attack']}): {verdict}")
    return lines


def main(argv=None):
    args = parse_args(argv)
    if args.report_only:
        results = load_previous(args.json)
        if not results or not results["runs"]:
            print(f"error: {args.json} has no runs", file=sys.stderr)
            return 2
        report(results, args)
        return 0
    import keras

    from keras_dcp.defenses.registry import parse_spec
    from keras_dcp.experiments import best_responses, run_experiment, save_results
    from keras_dcp.model_io import load_keras_model

    specs = defense_specs(args)
    for spec in specs:
        parse_spec(spec)  # a typo fails now, not hours in
    attacks = args.attack or ["knockoff", "knockoff-label"]
    victim = load_keras_model(args.victim, what="victim")
    x_train, y_train = _load(os.path.join(args.data, "cifar10", "train.npz"), args.max_train, args.seed)
    x_test, y_test = _load(os.path.join(args.data, "cifar10", "test.npz"), args.test_limit, args.seed)
    x_queries, _ = _load(os.path.join(args.data, "tinyimagenet", "queries.npz"), args.budget, args.seed)
    _, record = misinformation_model(args, victim, x_train, y_train, x_test, y_test)
    print(f"misinformation model: {json.dumps(record)}", flush=True)

    results = load_previous(args.json) if args.resume else None
    if results is not None:
        check_same_setup(results, args)
    done = {(run["spec"], run["attack"]) for run in results["runs"]} if results else set()
    # MAD and AM first, then none and DCP (whose cells benchmarks/adaptive_cifar10.py also runs, on the
    # same queries and clone training): one defense at a time, saved after each, so a stopped run keeps
    # the cells found nowhere else.
    baselines_first = sorted(specs, key=lambda spec: parse_spec(spec)[0] not in ("mad", "am"))
    for spec in baselines_first:
        todo = [attack for attack in attacks if (spec, attack) not in done]
        if not todo:
            continue
        keras.utils.set_random_seed(args.seed)  # the same MAD surrogate init and clone init per spec
        part = run_experiment(
            victim, x_test, y_test, x_queries, defenses=[spec], attacks=todo, budget=args.budget,
            epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
            dataset="cifar10 (shared/data) <- tinyimagenet queries", verbose=1,
        )
        if results is None:
            results = part
            results["config"].update(
                command=shlex.join([sys.executable, *sys.argv]), date=datetime.datetime.now().isoformat(" ", "seconds"),
                machine=platform.platform(), victim_path=args.victim, misinformation_model=record,
                defenses=specs, max_train=args.max_train, test_limit=args.test_limit,
            )
        else:
            results["runs"].extend(part["runs"])
            results["best_responses"] = best_responses(results["runs"])
            results["config"].setdefault("resumed", []).append(
                {"command": shlex.join([sys.executable, *sys.argv]), "spec": spec, "attacks": todo,
                 "date": datetime.datetime.now().isoformat(" ", "seconds")})
        save_results(results, args.json)
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
