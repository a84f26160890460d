"""Paper-scale CIFAR-10 run: ResNet-20 victim, KnockoffNets on natural images, defense sweeps.

Not a test. Backend-agnostic Keras: it runs on the TensorFlow backend on a CPU
and on the JAX backend on a GPU machine without TensorFlow
(``KERAS_BACKEND=jax``), where ``--parallel-clones N`` trains the grid's clones
together (:mod:`keras_dcp.experiments.parallel`). Phases:

    # 1. the victim (ResNet-20 on all 50,000 CIFAR-10 training images: --train is repeatable)
    python benchmarks/cifar10_paper_scale.py victim --train TRAIN.npz --train TRAIN_EXTRA.npz \
        --test TEST.npz --epochs 60 -o victim.keras
    # 2. the grid, in one process, the clones trained together (JAX)
    python benchmarks/cifar10_paper_scale.py grid --victim victim.keras --test TEST.npz \
        --queries QUERIES.npz --budget 20000 --sweep dcp --sweep rs --sweep mad --sweep am --skip-unknown \
        --attack knockoff --attack knockoff-label --epochs 30 --parallel-clones 32 --json all.json
    # (or one worker per slice of the grid, and 3. merge the parts into one results JSON and plot)
    python benchmarks/cifar10_paper_scale.py merge part*.json --json all.json --plot tradeoff.png

TRAIN/TEST/QUERIES are ``.npz`` files with ``x`` (uint8 NHWC) and ``y``, such as
``../shared/data/cifar10/{train,train_extra,test}.npz`` and ``../shared/data/tinyimagenet/queries.npz``.
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

    parts = [_load(path) for path in args.train]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    if args.limit is not None and args.limit < len(x):
        keep = np.random.default_rng(args.seed).permutation(len(x))[: args.limit]
        x, y = x[keep], y[keep]
    keras.utils.set_random_seed(args.seed)
    extra = {"width": args.width} if args.width else {}
    model = get_model(args.arch, input_shape=x.shape[1:], num_classes=int(y.max()) + 1, **extra)
    started = time.perf_counter()
    train_classifier(model, x, y, epochs=args.epochs, batch_size=args.batch_size,
                     learning_rate=args.learning_rate, seed=args.seed, verbose=2,
                     checkpoint_dir=args.checkpoint_dir)
    seconds = time.perf_counter() - started
    partial = args.output + ".partial.keras"
    model.save(partial)
    meta = {"arch": args.arch, "train_files": [os.path.basename(p) for p in args.train],
            "train_images": int(len(x)), "epochs": args.epochs,
            "batch_size": args.batch_size, "learning_rate": args.learning_rate,
            "seconds": seconds, "backend": keras.backend.backend()}
    if args.test:
        x_test, y_test = _load(args.test)
        meta["test_accuracy"] = float(accuracy(model, x_test, y_test))
    with open(args.output + ".json", "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(partial, args.output)  # appears whole, for workers that wait for it
    print(json.dumps(meta))


def _grid_specs(args):
    """``--defense`` specs and every ``--sweep`` grid, ``none`` first; unknown defenses dropped with a note
    when ``--skip-unknown`` (a grid that names defenses landed on other branches)."""
    from keras_dcp.defenses.registry import parse_spec
    from keras_dcp.experiments import defense_specs, expand_sweep

    specs, sweeps = [], []
    for item, target in [(d, specs) for d in args.defense or []] + [(w, sweeps) for w in args.sweep or []]:
        try:
            (expand_sweep if target is sweeps else parse_spec)(item)
        except ValueError as error:
            if not args.skip_unknown:
                raise
            print(f"skipping {item!r}: {error}", flush=True)
            continue
        target.append(item)
    return defense_specs(specs, sweeps)


def grid(args):
    import keras

    import keras_dcp  # noqa: F401  (registers the defense layers)
    from keras_dcp.experiments import best_responses, run_experiment, save_results

    started = time.perf_counter()
    model = keras.saving.load_model(args.victim, compile=False)
    x_test, y_test = _load(args.test, args.test_limit)
    x_queries, _ = _load(args.queries, args.budget, seed=args.seed)
    specs = _grid_specs(args)
    chunk = args.chunk or len(specs)
    # (defense settings, budget) per run_experiment call: the grid in chunks, then the undefended budget sweep.
    calls = [(specs[i : i + chunk], args.budget) for i in range(0, len(specs), chunk)]
    calls += [(["none"], int(b)) for b in (args.baseline_budgets or "").split(",") if b.strip()]
    results = None
    print(f"grid: {len(specs)} defense settings x {len(args.attack)} attacks, {len(calls)} calls", flush=True)
    # One call at a time, saving after each, so a run stopped at a deadline keeps what finished.
    for defenses, budget in calls:
        if args.deadline and time.time() > args.deadline:
            print(f"deadline: stopping before {defenses} at {budget} queries", flush=True)
            break
        part = run_experiment(
            model, x_test, y_test, x_queries,
            defenses=defenses, attacks=args.attack, budget=budget,
            epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
            seed=args.seed, dataset="cifar10 (../shared/data) <- tinyimagenet queries", verbose=1,
            parallel_clones=args.parallel_clones, precision=args.precision, eval_batch_size=args.eval_batch_size,
        )
        if results is None:
            results = part
            results["config"]["clone_groups"] = list(part["config"].get("clone_groups", []))
        else:
            results["runs"].extend(part["runs"])
            results["best_responses"] = best_responses(results["runs"])
            results["config"]["clone_groups"].extend(part["config"].get("clone_groups", []))
        groups = results["config"]["clone_groups"]
        images, seconds = sum(g["images"] for g in groups), sum(g["seconds"] for g in groups)
        results["config"]["grid_wall_seconds"] = time.perf_counter() - started
        results["config"]["clone_images_per_second"] = images / seconds if seconds else None
        if args.meta and os.path.exists(args.meta):
            with open(args.meta) as f:
                results["victim"]["training"] = json.load(f)
        save_results(results, args.json)
        print(json.dumps([{k: r[k] for k in ("defense", "params", "attack", "budget", "defender_accuracy",
                                             "attacker_accuracy", "seconds")} for r in part["runs"]]), flush=True)
        print(json.dumps({"clone_groups": part["config"].get("clone_groups"),
                          "grid_wall_seconds": results["config"]["grid_wall_seconds"]}), flush=True)
    if results is not None and args.plot:
        from keras_dcp.experiments import format_table, plot_tradeoff

        print(format_table(results), flush=True)
        plot_tradeoff(results, args.plot, title=args.title)


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
    p.add_argument("--train", required=True, action="append", help="repeatable: the files are concatenated")
    p.add_argument("--test")
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--width", type=int, help="zoo width (small_cnn, resnets); default the zoo's")
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
    p.add_argument("--defense", action="append")
    p.add_argument("--sweep", action="append", help="a defense grid (keras-dcp evaluate --sweep)")
    p.add_argument("--skip-unknown", action="store_true", help="drop defenses this checkout does not have")
    p.add_argument("--attack", action="append", required=True)
    p.add_argument("--parallel-clones", type=int, help="train up to N clones together (JAX backend)")
    p.add_argument("--precision", default="float32", help="float32 or mixed_bfloat16 (clones)")
    p.add_argument("--eval-batch-size", type=int, default=256, help="victim answers and test predictions")
    p.add_argument("--chunk", type=int, help="defense settings per run_experiment call (default: all)")
    p.add_argument("--baseline-budgets", help="also the undefended victim at these budgets, e.g. 5000,10000")
    p.add_argument("--deadline", type=float, help="unix time after which no new chunk starts")
    p.add_argument("--meta", help="the victim's .json training record, stored in the results")
    p.add_argument("--plot")
    p.add_argument("--title")
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
