"""QAT victim -> protected -> int8 ``.tflite`` (not a test; for latency and op checks).

Fine-tunes ``--victim`` with quantization-aware training (``keras_dcp.qat``) on
``--samples`` CIFAR-10 train images of ``../shared/data`` for ``--epochs``, appends
DCP (defaults) and writes the int8 export (float tail, int8 I/O) to ``--out``.
Uses only the public API, so it also runs against an older checkout
(``PYTHONPATH=OLD_CHECKOUT python benchmarks/qat_export.py ...``).

    python benchmarks/qat_export.py --victim /work/cache/victims/resnet20_cifar10_dev.keras --out /tmp/qat.tflite
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    import keras_dcp
    from keras_dcp import qat
    from keras_dcp.tflite import audit_tflite, export_tflite

    train = np.load(os.path.join(args.data, "cifar10", "train.npz"))
    rows = np.random.default_rng(args.seed).permutation(len(train["y"]))[:args.samples]
    model = qat.quantize_model(qat.to_tf_keras(keras.saving.load_model(args.victim)))
    qat.train_qat(model, train["x"][rows].astype("float32") / 255.0, train["y"][rows], epochs=args.epochs,
                  seed=args.seed, verbose=0)
    content = export_tflite(qat.protect_qat(model, keras_dcp.DeceptionLayer()), args.out, quantize="int8")
    counts = {}
    for op in audit_tflite(content)["ops"]:
        key = f"{op['op']}:{','.join(op['output_types'])}"
        counts[key] = counts.get(key, 0) + 1
    print(keras_dcp.__file__, args.out, dict(sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
