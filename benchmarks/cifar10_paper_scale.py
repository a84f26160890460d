"""Paper-scale CIFAR-10 run: ResNet-20 victim, KnockoffNets on natural images, defense sweeps.

Not a test. Backend-agnostic Keras: it runs on the TensorFlow backend on a CPU
and on the JAX backend on a GPU machine without TensorFlow
(``KERAS_BACKEND=jax``). Three phases, so a GPU can train several clones at
once in separate processes:

    # 1. the victim (ResNet-20 on the CIFAR-10 training images)
    python benchmarks/cifar10_paper_scale.py victim --train TRAIN.npz --test TEST.npz \
        --epochs 60 -o victim.keras
    # 2. one worker per slice of the grid (run several in parallel)
    python benchmarks/cifar10_paper_scale.py grid --victim victim.keras --test TEST.npz \
        --queries QUERIES.npz --budget 20000 --defense none --defense dcp:beta=0.5,gamma=0.2 \
        --attack knockoff --attack knockoff-label --epochs 30 --json part1.json
    # 3. merge the parts into one results JSON, table and trade-off plot
    python benchmarks/cifar10_paper_scale.py merge part*.json --json all.json --plot tradeoff.png

TRAIN/TEST/QUERIES are ``.npz`` files with ``x`` (uint8 NHWC) and ``y``, such as
``../shared/data/cifar10/{train,test}.npz`` and ``../shared/data/tinyimagenet/queries.npz``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def _load(path, limit=None, seed=0):
    with np.load(path) as data:
        x, y = data["x"], data["y"].astype("int64").reshape(-1)
    if limit is not None and limit < len(x):
        keep = np.random.default_rng(seed).permutation(len(x))[:limit]
        x, y = x[keep], y[keep]
    return x, y


def victim(args):
    import keras

    from keras_dcp.models import get_model
    from keras_dcp.training import accuracy, train_classifier

    x, y = _load(args.train, args.limit)
    keras.utils.set_random_seed(args.seed)
    model = get_model(args.arch, input_shape=x.shape[1:], num_classes=int(y.max()) + 1)
    started = time.perf_counter()
    train_classifier(model, x, y, epochs=args.epochs, batch_size=args.batch_size,
                     learning_rate=args.learning_rate, seed=args.seed, verbose=2,
                     checkpoint_dir=args.checkpoint_dir)
    seconds = time.perf_counter() - started
    partial = args.output + ".partial.keras"
    model.save(partial)
    meta = {"arch": args.arch, "train_images": int(len(x)), "epochs": args.epochs,
            "batch_size": args.batch_size, "learning_rate": args.learning_rate,
            "seconds": seconds, "backend": keras.backend.backend()}
    if args.test:
        x_test, y_test = _load(args.test)
        meta["test_accuracy"] = float(accuracy(model, x_test, y_test))
    with open(args.output + ".json", "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(partial, args.output)  # appears whole, for workers that wait for it
    print(json.dumps(meta))


def grid(args):
    import keras

    import keras_dcp  # noqa: F401  (registers the defense layers)
    from keras_dcp.experiments import best_responses, run_experiment, save_results

    model = keras.saving.load_model(args.victim, compile=False)
    x_test, y_test = _load(args.test, args.test_limit)
    x_queries, _ = _load(args.queries, args.budget, seed=args.seed)
    results = None
    # One defense at a time, saving after each, so a run stopped at a deadline keeps what finished.
    for spec in args.defense:
        part = run_experiment(
            model, x_test, y_test, x_queries,
            defenses=[spec], attacks=args.attack, budget=args.budget,
            epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
            seed=args.seed, dataset="cifar10 (../shared/data) <- tinyimagenet queries", verbose=1,
        )
        if results is None:
            results = part
        else:
            results["runs"].extend(part["runs"])
            results["best_responses"] = best_responses(results["runs"])
        save_results(results, args.json)
        print(json.dumps([{k: r[k] for k in ("defense", "params", "attack", "budget", "defender_accuracy",
                                             "attacker_accuracy", "seconds")} for r in part["runs"]]), flush=True)


def merge(args):
    from keras_dcp.experiments import best_responses, format_table, plot_tradeoff, save_results

    parts = []
    for path in args.parts:
        with open(path) as f:
            parts.append(json.load(f))
    merged = dict(parts[0])
    merged["runs"] = [run for part in parts for run in part["runs"]]
    merged["best_responses"] = best_responses(merged["runs"])
    if args.meta:
        with open(args.meta) as f:
            merged["victim"]["training"] = json.load(f)
    save_results(merged, args.json)
    print(format_table(merged))
    if args.plot:
        plot_tradeoff(merged, args.plot, title=args.title)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="phase", required=True)
    p = sub.add_parser("victim")
    p.add_argument("--train", required=True)
    p.add_argument("--test")
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=0.1)
    p.add_argument("--limit", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(fn=victim)
    p = sub.add_parser("grid")
    p.add_argument("--victim", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--test-limit", type=int)
    p.add_argument("--queries", required=True)
    p.add_argument("--budget", type=int, required=True)
    p.add_argument("--defense", action="append", required=True)
    p.add_argument("--attack", action="append", required=True)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", required=True)
    p.set_defaults(fn=grid)
    p = sub.add_parser("merge")
    p.add_argument("parts", nargs="+")
    p.add_argument("--json", required=True)
    p.add_argument("--plot")
    p.add_argument("--meta", help="the victim's .json training record")
    p.add_argument("--title")
    p.set_defaults(fn=merge)
    args = parser.parse_args(argv)
    args.fn(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
