"""Adaptive thieves against DCP and keyed DCP on real CIFAR-10 (issue 11; not a test).

The thief knows the defense and the README's defaults (Kerckhoffs). For every
defense setting, every attack steals a clone with the same Tiny-ImageNet query
budget and clone training; the table gives each defense's benign accuracy and
distortion, the clone accuracy of every attack and the thief's best response.

Defenses: none; DCP at ``--dcp`` settings (beta = tau); keyed DCP
(:class:`keras_dcp.KeyedDeception`, DCP at the README defaults plus secret label
moves on low-energy queries) at each ``--keyed-budget`` (benign accuracy the
defender accepts to lose, in points: ``energy_threshold`` is calibrated on
``--calibration`` held-out CIFAR-10 training images the victim never saw, from
train_extra.npz, with :func:`keras_dcp.defenses.calibrate_energy_threshold`;
the key is fixed by ``--key`` so the run repeats).

Attacks: ``knockoff`` (soft), ``knockoff-label``, ``knockoff-aware`` with the
defense's true DCP parameters ("known") and with ``defense="estimate"``,
``knockoff-invert`` (known parameters), ``knockoff-selective``.

    python benchmarks/adaptive_cifar10.py --victim V.keras --budget 10000 --epochs 10 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ADAPTIVE = ("knockoff-aware", "knockoff-aware:estimate", "knockoff-invert", "knockoff-selective")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", required=True)
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    parser.add_argument("--budget", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-test", type=int, default=10000)
    parser.add_argument("--dcp", type=float, action="append", help="DCP beta = tau settings (default 0.7 and 0.9)")
    parser.add_argument("--keyed-budget", type=float, action="append",
                        help="benign cost in points for keyed DCP (default 0, 0.5, 1)")
    parser.add_argument("--calibration", type=int, default=10000, help="held-out images for flip_tau")
    parser.add_argument("--key", type=int, default=20261130)
    parser.add_argument("--attacks", default="knockoff,knockoff-label," + ",".join(ADAPTIVE),
                        help="comma-separated; knockoff-aware:estimate is the aware attack estimating the parameters")
    parser.add_argument("--only", help="run only the defense settings whose label contains this text")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", required=True, help="results (appended run by run, so an interrupted run keeps "
                        "what finished; rerun to continue)")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from keras_dcp import experiments
    from keras_dcp.defenses import calibrate_energy_threshold
    from keras_dcp.model_io import load_keras_model
    from keras_dcp.protect import logits_tensor

    victim = load_keras_model(args.victim, what="victim")
    test = np.load(os.path.join(args.data, "cifar10", "test.npz"))
    x_test, y_test = test["x"][: args.max_test], test["y"][: args.max_test]
    # The same seeded `budget` queries as benchmarks/baselines_cifar10.py takes, so the none/DCP
    # soft and label-only cells of both scripts are one setting.
    queries = np.load(os.path.join(args.data, "tinyimagenet", "queries.npz"))["x"]
    x_queries = queries[np.sort(np.random.default_rng(args.seed).permutation(len(queries))[: args.budget])]
    held_out = np.load(os.path.join(args.data, "cifar10", "train_extra.npz"))
    x_cal, y_cal = held_out["x"][: args.calibration], held_out["y"][: args.calibration]
    inputs, logits = logits_tensor(victim)
    cal_logits = keras.Model(inputs, logits).predict(x_cal.astype("float32") / 255.0, batch_size=500, verbose=0)

    settings = [("none", "none", {})]
    for beta in args.dcp or [0.7, 0.9]:
        settings.append((f"dcp {beta:g}", f"dcp:beta={beta:g},gamma=0.2", {"beta": beta, "gamma": 0.2, "tau": beta}))
    for budget in args.keyed_budget if args.keyed_budget is not None else [0.0, 0.5, 1.0]:
        threshold = calibrate_energy_threshold(cal_logits, y_cal, budget)
        spec = f"dcp-keyed:beta=0.7,gamma=0.2,energy_threshold={threshold:.6f},key={args.key}"
        settings.append((f"keyed {budget:g} pt", spec, {"beta": 0.7, "gamma": 0.2, "tau": 0.7}))

    done = set()
    if os.path.exists(args.json):
        with open(args.json) as handle:
            done = {(r["setting"], r["attack"]) for r in map(json.loads, handle) if "attack" in r}
    requested = [a.strip() for a in args.attacks.split(",") if a.strip()]
    for label, spec, known in settings:
        if args.only and args.only not in label:
            continue
        for requested_attack in requested:
            attack, _, variant = requested_attack.partition(":")
            if label == "none" and attack not in ("knockoff", "knockoff-label"):
                continue  # nothing to adapt to
            if (label, requested_attack) in done:
                continue
            options = {}
            if attack in ("knockoff-aware", "knockoff-invert", "knockoff-selective"):
                options["defense"] = "estimate" if variant == "estimate" else known
            started = time.time()
            keras.utils.set_random_seed(args.seed)
            results = experiments.run_experiment(
                victim, x_test, y_test, x_queries, defenses=[spec], attacks=[attack], budget=args.budget,
                epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, dataset="cifar10-local",
                attack_options={attack: options}, verbose=1,
            )
            run = results["runs"][0]
            run.update(setting=label, attack=requested_attack, victim_accuracy=results["victim"]["accuracy"],
                       wall_seconds=round(time.time() - started, 1), date=time.strftime("%Y-%m-%d"))
            print(json.dumps({k: run[k] for k in ("setting", "attack", "defender_accuracy", "attacker_accuracy",
                                                  "l1_distance", "perturbed_fraction", "wall_seconds")}), flush=True)
            with open(args.json, "a") as handle:
                handle.write(json.dumps(run) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
