"""Int8 that matches the float model the user tested (issue 12): a grid of export paths (not a test).

For a victim (``--victim``, a .keras classifier ending in a softmax, inputs in
[0, 1]) protected with DCP, each ``--variant`` exports an int8 model and is
judged against the ORIGINAL float protected model on all CIFAR-10 test images
and all Tiny-ImageNet queries of ``--data``: test accuracy, top-1 agreement and
mean l1 of the defended output, with int8 I/O and with float I/O (XNNPACK).

Variants (``name[:key=value,...]``):

* ``ptq``: post-training quantization, float defense tail (``export_tflite``),
  ``calibration=N`` representative training images (default 500);
* ``faithful``: :func:`keras_dcp.qat.faithful_int8`: QAT as distillation from
  the float model; keys ``epochs`` (0: calibrated QAT, no training), ``lr``,
  ``loss`` (logits|kl), ``mixup`` (fraction of extra blended images),
  ``train`` (training images used; up to 50,000 with train_extra.npz),
  ``seeds`` (e.g. 0/1/2: candidates, the closest to the float model on mixup
  check images is kept), ``batch``.

    python benchmarks/int8_faithful.py --victim V.keras --variant ptq \\
        --variant faithful:epochs=2,lr=1e-4,train=20000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_variant(text):
    name, _, rest = text.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        params[key.strip()] = value.strip()
    return name.strip(), params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", required=True)
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--beta", type=float, default=0.7)
    parser.add_argument("--gamma", type=float, default=0.2)
    parser.add_argument("--n-cifar", type=int, default=10000)
    parser.add_argument("--n-tin", type=int, default=20000)
    parser.add_argument("--json", help="append each variant's results here (JSON lines)")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    import keras_dcp
    from keras_dcp.tflite import export_tflite, fidelity, predict

    victim = keras.saving.load_model(args.victim)
    protected = keras_dcp.protect(victim, keras_dcp.DeceptionLayer(beta=args.beta, gamma=args.gamma))
    train = np.load(os.path.join(args.data, "cifar10", "train.npz"))
    x_train, y_train = train["x"], train["y"]
    extra_path = os.path.join(args.data, "cifar10", "train_extra.npz")
    test = np.load(os.path.join(args.data, "cifar10", "test.npz"))
    x_test, y_test = test["x"][: args.n_cifar].astype("float32") / 255.0, test["y"][: args.n_cifar]
    x_tin = np.load(os.path.join(args.data, "tinyimagenet", "queries.npz"))["x"][: args.n_tin]
    x_tin = x_tin.astype("float32") / 255.0
    sets = {"cifar10_test": x_test, "tinyimagenet_queries": x_tin}
    float_answers = {k: protected.predict(v, batch_size=500, verbose=0) for k, v in sets.items()}
    float_accuracy = float(np.mean(float_answers["cifar10_test"].argmax(1) == y_test))
    print(f"float protected model: test accuracy {float_accuracy:.4f}", flush=True)

    for text in args.variant:
        name, params = parse_variant(text)
        started = time.time()
        result = {"variant": text, "date": time.strftime("%Y-%m-%d"), "victim": args.victim,
                  "float_accuracy": float_accuracy, "exports": {}}
        if name == "ptq":
            calibration = int(params.get("calibration", 500))
            rows = np.random.default_rng(0).permutation(len(x_train))[:calibration]
            representative = x_train[rows].astype("float32") / 255.0
            exports = {io: export_tflite(protected, None, quantize="int8", representative=representative, io_type=io)
                       for io in ("int8", "float")}
        elif name == "faithful":
            from keras_dcp.qat import faithful_int8

            count = int(params.get("train", 20000))
            images = x_train
            if count > len(images):
                extra = np.load(extra_path)["x"]
                images = np.concatenate([images, extra])
            images = images[np.random.default_rng(0).permutation(len(images))[:count]].astype("float32") / 255.0
            seeds = [int(s) for s in params.get("seeds", "0").split("/")]
            settings = dict(epochs=int(params.get("epochs", 2)), learning_rate=float(params.get("lr", 1e-4)),
                            loss=params.get("loss", "logits"), mixup=float(params.get("mixup", 1.0)),
                            batch_size=int(params.get("batch", 128)), seeds=seeds, verbose=2)
            from keras_dcp.qat import convert_qat

            content, report, chosen = faithful_int8(protected, images, io_type="int8", return_model=True, **settings)
            result["report"] = report
            exports = {"int8": content, "float": convert_qat(chosen, io_type="float")}
        else:
            raise SystemExit(f"unknown variant {name!r}")
        for io, content in exports.items():
            if content is None:
                continue
            row = {}
            for set_name, x in sets.items():
                row[set_name] = fidelity(content, float_answers[set_name], x)
                if set_name == "cifar10_test":
                    row["accuracy"] = float(np.mean(predict(content, x, batch_size=500).argmax(1) == y_test))
            result["exports"][io] = row
        result["seconds"] = round(time.time() - started, 1)
        print(json.dumps(result["exports"], indent=1), f"({result['seconds']} s)", flush=True)
        if args.json:
            with open(args.json, "a") as handle:
                handle.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
