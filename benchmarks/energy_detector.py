"""Which score should pick the answers keyed DCP moves: logit energy or top probability? (issue 11; not a test)

For each benign budget (accuracy points the defender accepts to lose), the
threshold of each score is calibrated on ``--calibration`` held-out CIFAR-10
training images the victim never saw (``train_extra.npz``): the largest
threshold whose expected cost, ``mean_i [s_i < t] ([correct_i] - [wrong_i] / (K - 1))``,
stays within budget (:func:`keras_dcp.defenses.keyed.calibrate_threshold`; for the energy,
:func:`keras_dcp.defenses.calibrate_energy_threshold`). Then, with ``flip_rate = 1``: the share of Tiny-ImageNet queries
whose label moves (what the thief loses), and the expected accuracy cost on the
CIFAR-10 test images (whether the held-out calibration carries over).

    python benchmarks/energy_detector.py --victim V.keras --data ../shared/data --budget 0.5 --budget 1 --budget 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", required=True)
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    parser.add_argument("--budget", type=float, action="append", help="benign points (default 0.5, 1, 2)")
    parser.add_argument("--calibration", type=int, default=10000)
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from keras_dcp.defenses import calibrate_energy_threshold
    from keras_dcp.defenses.keyed import calibrate_threshold, expected_benign_cost
    from keras_dcp.ops import energy
    from keras_dcp.model_io import load_keras_model
    from keras_dcp.protect import logits_tensor

    victim = load_keras_model(args.victim, what="victim")
    inputs, logits = logits_tensor(victim)
    logits_model = keras.Model(inputs, logits)

    def load(name, limit=None):
        with np.load(os.path.join(args.data, name)) as data:
            x = data["x"][:limit]
            y = data["y"][:limit].reshape(-1) if "y" in data else None
        return logits_model.predict(x.astype("float32") / 255.0, batch_size=500, verbose=0), y

    cal, y_cal = load("cifar10/train_extra.npz", args.calibration)
    test, y_test = load("cifar10/test.npz")
    queries, _ = load("tinyimagenet/queries.npz")
    num_classes = cal.shape[1]

    def scores(z):
        log_normaliser = keras.ops.convert_to_numpy(energy(z))[:, 0]  # the layer's own energy
        return {"energy": log_normaliser, "top_probability": np.exp(z.max(axis=1) - log_normaliser)}

    s_cal, s_test, s_queries = scores(cal), scores(test), scores(queries)
    correct_cal = cal.argmax(1) == y_cal
    correct_test = test.argmax(1) == y_test
    rows = []
    for budget in args.budget or [0.5, 1.0, 2.0]:
        for name in ("energy", "top_probability"):
            if name == "energy":
                threshold = calibrate_energy_threshold(cal, y_cal, budget)
            else:
                threshold = calibrate_threshold(s_cal[name], correct_cal, budget, num_classes)
            moved_test = s_test[name] < threshold
            row = {
                "budget_points": budget, "score": name, "threshold": threshold,
                "queries_moved": float(np.mean(s_queries[name] < threshold)),
                "test_moved": float(np.mean(moved_test)),
                "test_cost_points": 100.0 * expected_benign_cost(moved_test, correct_test, num_classes),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| benign budget (points) | score | Tiny-ImageNet queries moved | CIFAR-10 test moved | test cost (points) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['budget_points']:g} | {row['score']} | {100 * row['queries_moved']:.1f}% | "
              f"{100 * row['test_moved']:.1f}% | {row['test_cost_points']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
