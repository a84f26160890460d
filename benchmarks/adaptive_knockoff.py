"""Adaptive KnockoffNets against random sampling, over seeds, at a small CPU scale.

Not a test. A small CNN victim trained on CIFAR-10 (``--victim``: trained and
saved there when the file does not exist), Tiny-ImageNet queries with their 202
class labels as the bandit's arms, a small-CNN clone, and per budget and seed:

* ``random``: KnockoffNets' random sampling;
* ``adaptive-constant``: the gradient bandit with a constant step 0.05 (this
  package's original rule) over the 202 label arms;
* ``adaptive-inverse``: the same with ART's ``1/N(arm)`` step;
* ``adaptive-inverse-k20``: ``1/N(arm)`` over 20 k-means arms (fewer arms).

All adaptive runs use the reward ``all`` (the paper's). Prints one JSON line per
run (clone accuracy on the test set, the policy's largest arm probability and
how many arms got a query) and a table of means and standard deviations.

    python benchmarks/adaptive_knockoff.py --victim runs/cifar_small_cnn.keras \\
        --budgets 1000,4000 --seeds 0,1,2 --epochs 10
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

STRATEGIES = {
    "random": dict(strategy="random"),
    "adaptive-constant": dict(strategy="adaptive", bandit_step="constant"),
    "adaptive-inverse": dict(strategy="adaptive", bandit_step="inverse_count"),
    "adaptive-inverse-k20": dict(strategy="adaptive", bandit_step="inverse_count", num_arms=20),
}


def _load(path, limit=None, seed=0):
    with np.load(path) as data:
        x, y = data["x"], data["y"].astype("int64").reshape(-1)
    if limit is not None and limit < len(x):
        keep = np.random.default_rng(seed).permutation(len(x))[:limit]
        x, y = x[keep], y[keep]
    return x.astype("float32") / 255.0, y


def _victim(args):
    import keras

    from keras_dcp.models import small_cnn
    from keras_dcp.training import train_classifier

    if os.path.exists(args.victim):
        return keras.saving.load_model(args.victim, compile=False)
    x, y = _load(os.path.join(args.data, "cifar10", "train.npz"))
    keras.utils.set_random_seed(0)
    model = small_cnn((32, 32, 3), 10, width=args.victim_width)
    started = time.perf_counter()
    train_classifier(model, x, y, epochs=args.victim_epochs, batch_size=128, learning_rate=0.05, seed=0, verbose=2)
    print(json.dumps({"victim_seconds": time.perf_counter() - started}), flush=True)
    model.save(args.victim)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--victim", required=True, help="a .keras victim; trained here if missing")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--victim-width", type=int, default=16)
    parser.add_argument("--victim-epochs", type=int, default=8)
    parser.add_argument("--clone-width", type=int, default=8)
    parser.add_argument("--budgets", default="1000,4000")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--out", help="also write every run as JSON here")
    args = parser.parse_args(argv)

    from keras_dcp import attacks
    from keras_dcp.models import small_cnn

    victim_model = _victim(args)
    x_test, y_test = _load(os.path.join(args.data, "cifar10", "test.npz"), args.test_size)
    x_queries, arms = _load(os.path.join(args.data, "tinyimagenet", "queries.npz"))
    records = []
    for budget in [int(b) for b in args.budgets.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for name in args.strategies.split(","):
                options = dict(STRATEGIES[name])
                labels = None if "num_arms" in options or options["strategy"] == "random" else arms
                victim = attacks.BlackBox(victim_model, budget=budget)
                attack = attacks.KnockoffNets(lambda: small_cnn((32, 32, 3), 10, width=args.clone_width),
                                              epochs=args.epochs, seed=seed, verbose=0, **options)
                started = time.perf_counter()
                clone = attack.extract(victim, x_queries, budget=budget, query_labels=labels)
                seconds = time.perf_counter() - started
                report = attacks.evaluate_clone(clone, victim, x_test, y_test)
                record = {"strategy": name, "budget": budget, "seed": seed, "queries_used": victim.queries_used,
                          "attacker_accuracy": report["attacker_accuracy"], "seconds": round(seconds, 1)}
                if attack.arm_probabilities is not None:
                    record["max_arm_probability"] = float(attack.arm_probabilities.max())
                    record["arms"] = int(len(attack.arm_counts))
                    record["arms_queried"] = int((attack.arm_counts > 0).sum())
                    record["top_arm_share"] = float(attack.arm_counts.max() / attack.arm_counts.sum())
                print(json.dumps(record), flush=True)
                records.append(record)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(records, f, indent=1)
    print("\nstrategy               budget  clone accuracy (mean +- std over seeds)  top-arm share  max pi")
    for budget in sorted({r["budget"] for r in records}):
        for name in args.strategies.split(","):
            rows = [r for r in records if r["budget"] == budget and r["strategy"] == name]
            acc = np.array([r["attacker_accuracy"] for r in rows])
            share = np.mean([r.get("top_arm_share", np.nan) for r in rows])
            top = np.mean([r.get("max_arm_probability", np.nan) for r in rows])
            print(f"{name:22s} {budget:6d}  {acc.mean():.4f} +- {acc.std():.4f} ({len(acc)} seeds)"
                  f"                  {share:.3f}          {top:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
