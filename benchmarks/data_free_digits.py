"""MAZE and DFME on the offline digits victim: at which budget do they beat chance?

Not a test. Trains (or loads) the small-CNN digits victim of ``keras-dcp demo``
(scikit-learn's digits, 32x32x1, 10 classes: chance is 0.10), then runs each
data-free attack at each budget against each defense with
:func:`keras_dcp.experiments.run_experiment`, prints the results table and
writes the results JSON (``--out``, rewritten after every budget). The
setting it measures is the one ``examples/04_data_free_attacks.ipynb`` runs in
its full mode; the numbers are recorded in ``docs/results/attacks.md``.

    python benchmarks/data_free_digits.py --attack maze --budgets 300000 --out /tmp/maze.json \
        --victim-save /tmp/digits.keras
    python benchmarks/data_free_digits.py --victim /tmp/digits.keras --attack dfme \
        --option dfme:generator_learning_rate=1e-3 --budgets 100000 --out /tmp/dfme.json

Each budget is a separate run from scratch (a clone that learned from more
queries is not the continuation of one that learned from fewer), so the
cost of a list of budgets is their sum. Long runs show the attack's progress
bar (iterations, queries); with ``--checkpoint-dir`` a stopped run resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def parse_option(text: str) -> tuple[str, str, float | int | str]:
    """``"dfme:generator_learning_rate=1e-3"`` -> ``("dfme", "generator_learning_rate", 0.001)``."""
    try:
        attack, assignment = text.split(":", 1)
        key, value = assignment.split("=", 1)
    except ValueError:
        raise SystemExit(f"--option {text!r}: expected ATTACK:KEY=VALUE") from None
    for kind in (int, float):
        try:
            return attack.strip(), key.strip(), kind(value)
        except ValueError:
            pass
    return attack.strip(), key.strip(), value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--victim", help="a trained digits victim (.keras); default: train one")
    parser.add_argument("--victim-epochs", type=int, default=15, help="epochs of the victim trained here")
    parser.add_argument("--victim-save", help="where to save the victim trained here (.keras)")
    parser.add_argument("--attack", action="append", choices=("maze", "dfme"), help="repeatable; default both")
    parser.add_argument("--defense", action="append", metavar="SPEC", help="repeatable; default none")
    parser.add_argument("--budgets", default="100000", help="queries per run, comma separated")
    parser.add_argument("--option", action="append", default=[], metavar="ATTACK:KEY=VALUE",
                        help="constructor argument of an attack, e.g. dfme:generator_learning_rate=1e-3")
    parser.add_argument("--clone-width", type=int, default=16, help="small_cnn width of the clone")
    parser.add_argument("--checkpoint-dir", help="checkpoint each run under DIR/<attack>_<budget> (one defense only): "
                        "a rerun with the same folder resumes where a stopped run left off")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the results JSON here")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from keras_dcp import data, experiments, models
    from keras_dcp.model_io import load_keras_model
    from keras_dcp.training import accuracy, train_classifier

    attacks = args.attack or ["maze", "dfme"]
    defenses = args.defense or ["none"]
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    options: dict = {}
    for text in args.option:
        attack, key, value = parse_option(text)
        options.setdefault(attack, {})[key] = value

    if args.checkpoint_dir and len(defenses) > 1:
        raise SystemExit("--checkpoint-dir needs a single --defense (a checkpoint belongs to one run).")

    d = data.load_preset("digits", parts=("train", "test"))
    started = time.time()
    if args.victim:
        victim = load_keras_model(args.victim, what="victim")
    else:
        keras.utils.set_random_seed(args.seed)
        victim = models.small_cnn(input_shape=(32, 32, 1), num_classes=10, width=16)
        train_classifier(victim, d["x_train"], d["y_train"], epochs=args.victim_epochs, batch_size=64,
                         learning_rate=0.05, flip=False, seed=args.seed, verbose=0)
        if args.victim_save:
            victim.save(args.victim_save)
    print(f"victim: small_cnn on digits, test accuracy {accuracy(victim, d['x_test'], d['y_test']):.4f} "
          f"({time.time() - started:.0f} s); chance 0.10", flush=True)

    combined = None
    for budget in budgets:
        run_options = {attack: dict(options.get(attack, {})) for attack in attacks}
        if args.checkpoint_dir:
            for attack in attacks:
                run_options[attack]["checkpoint_dir"] = os.path.join(args.checkpoint_dir, f"{attack}_{budget}")
        results = experiments.run_experiment(
            victim, d["x_test"], d["y_test"], defenses=defenses, attacks=attacks, budget=budget,
            make_clone=lambda: models.small_cnn((32, 32, 1), 10, width=args.clone_width),
            seed=args.seed, dataset="digits", attack_options=run_options, verbose=2)  # 2: the attacks' own progress bars
        if combined is None:
            combined = results
        else:
            combined["runs"] += results["runs"]
            combined["best_responses"] = experiments.best_responses(combined["runs"])
        combined["config"]["command"] = shlex.join([sys.executable, *sys.argv])
        combined["config"]["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"
        combined["config"]["attack_options"] = options
        print(experiments.format_table(combined), flush=True)
        if args.out:
            with open(args.out, "w") as handle:
                json.dump(combined, handle, indent=1)


if __name__ == "__main__":
    main()
