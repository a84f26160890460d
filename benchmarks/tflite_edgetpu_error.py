"""Error of the Edge TPU formulation of DCP vs the exact math, in float32 (not a test).

For random logits ``z`` (``--rows`` rows, ``K`` classes, per-row scale uniform
in [0.5, 6] so both confident and unsure rows occur), compares
``keras_dcp.ops.deception_edgetpu(z)`` with ``keras_dcp.ops.deception(softmax(z))``:
l1 per row (mean, 99th percentile, max), the largest deviation of a row sum
from 1, and top-1 agreement. With ``--victim`` the victim's logits on
Tiny-ImageNet queries are used instead of random ones.

    python benchmarks/tflite_edgetpu_error.py --classes 10 100
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def error_table(logits, **defense):
    import keras
    import numpy as np

    from keras_dcp import ops

    approx = keras.ops.convert_to_numpy(ops.deception_edgetpu(logits, **defense))
    exact = keras.ops.convert_to_numpy(ops.deception(keras.ops.softmax(logits), **defense))
    l1 = np.abs(approx - exact).sum(1)
    return {
        "rows": len(logits), "l1_mean": float(l1.mean()), "l1_p99": float(np.quantile(l1, 0.99)),
        "l1_max": float(l1.max()), "sum_error_max": float(np.abs(approx.sum(1) - 1).max()),
        "top1_agreement": float(np.mean(approx.argmax(1) == exact.argmax(1))),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--beta", type=float, default=0.7)
    parser.add_argument("--gamma", type=float, default=0.2)
    parser.add_argument("--tau", type=float, default=None)
    parser.add_argument("--victim", help="use this .keras victim's logits on Tiny-ImageNet queries")
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    import numpy as np

    defense = dict(beta=args.beta, gamma=args.gamma, tau=args.tau)
    results = {"defense": defense, "tables": {}}
    if args.victim:
        import keras

        from keras_dcp.tflite import logits_tensor

        victim = keras.saving.load_model(args.victim)
        inputs, logits = logits_tensor(victim)
        queries = np.load(os.path.join(args.data, "tinyimagenet", "queries.npz"))["x"][:args.rows]
        z = keras.Model(inputs, logits).predict(queries.astype("float32") / 255.0, batch_size=500, verbose=0)
        results["tables"]["victim"] = error_table(z, **defense)
    else:
        rng = np.random.default_rng(0)
        for classes in args.classes:
            z = (rng.normal(size=(args.rows, classes)) * rng.uniform(0.5, 6, size=(args.rows, 1))).astype("float32")
            results["tables"][f"K={classes}"] = error_table(z, **defense)
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
