"""Fidelity of the defended output after int8 quantization (not a test).

For a victim (``--victim``, a .keras classifier ending in a softmax, inputs in
[0, 1]) and DCP (``--beta``, ``--gamma``, ``--tau``), compares each int8 model's
defended output with the float Keras model's defended output on CIFAR-10 test
images and Tiny-ImageNet queries: top-1 agreement, mean l1 difference, and the
share of rows whose detector decision ``[max y < tau]`` differs (from the
bare models of the same quantization). Variants:

* ``bare``: the victim alone, int8 (the backbone's own quantization error);
* ``bare dynamic-range``: the victim alone, int8 weights and dynamic-range
  activations (the weights' share of that error);
* ``naive``: everything int8 (``tail="int8"``), int8 I/O;
* ``float-tail``: head + softmax + DCP in float32 (the default export), int8 I/O
  and float I/O;
* ``edgetpu``: :class:`keras_dcp.tflite.EdgeTPUDeception`, all int8;
* ``qat``: QAT fine-tuning (``--qat-samples`` images, ``--qat-epochs``), biases
  aligned to the int8 grid (:func:`keras_dcp.qat.align_biases`; ``--no-align``
  skips it), then float-tail int8 vs the QAT Keras model's defended output;
  with ``--qat-seeds`` one QAT model per seed, keeping the one whose export is
  closest to its Keras model on mixup images of the training set.

    python benchmarks/tflite_fidelity.py --victim /work/cache/victims/resnet20_cifar10.keras --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def compare(defended, reference, bare_probs=None, ref_probs=None, tau=0.7):
    """keras_dcp.tflite.compare_outputs, plus the detector flip judged on the bare probabilities."""
    import numpy as np

    from keras_dcp.tflite import compare_outputs

    row = compare_outputs(defended, reference)
    if bare_probs is not None:
        row["detector_flip"] = float(np.mean((bare_probs.max(1) < tau) != (ref_probs.max(1) < tau)))
    return row


def _predict_rows(content, x):
    """Row-by-row outputs and a mask of the rows whose invoke raised."""
    import numpy as np

    from keras_dcp.tflite import make_interpreter, predict

    interpreter = make_interpreter(content)
    outputs, failed = [], np.zeros(len(x), bool)
    for i in range(len(x)):
        try:
            outputs.append(predict(None, x[i:i + 1], interpreter=interpreter)[0])
        except RuntimeError:
            failed[i] = True
            outputs.append(np.full(interpreter.get_output_details()[0]["shape"][-1], np.nan, "float32"))
    return np.stack(outputs), failed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", required=True, help=".keras victim (softmax output, inputs in [0, 1])")
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    parser.add_argument("--n-cifar", type=int, default=10000)
    parser.add_argument("--n-tin", type=int, default=20000)
    parser.add_argument("--calibration", type=int, default=500, help="representative CIFAR-10 train images")
    parser.add_argument("--beta", type=float, default=0.7)
    parser.add_argument("--gamma", type=float, default=0.2)
    parser.add_argument("--tau", type=float, default=None)
    parser.add_argument("--nu", type=float, default=1000.0,
                        help="detector slope; smaller is smoother, so a quantization error near tau moves a row less")
    parser.add_argument("--qat-samples", type=int, default=4000, help="0 skips QAT")
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--qat-lr", type=float, default=1e-3, help="Adam step of the QAT fine-tuning")
    parser.add_argument("--no-align", action="store_true",
                        help="QAT: keep the Keras biases as trained (see keras_dcp.qat.alignment)")
    parser.add_argument("--qat-seeds", help="comma-separated seeds: train one QAT model per seed and keep the "
                        "most faithful on --qat-check mixup images of the training set (keras_dcp.qat.selection)")
    parser.add_argument("--qat-check", type=int, default=2000, help="check images for --qat-seeds")
    parser.add_argument("--skip-ptq", action="store_true", help="only the QAT rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    import keras_dcp
    from keras_dcp.tflite import export_tflite, fidelity, predict, protect_for_edgetpu

    keras.utils.set_random_seed(args.seed)
    tau = args.beta if args.tau is None else args.tau
    defense = dict(beta=args.beta, gamma=args.gamma, tau=args.tau, nu=args.nu)
    rng = np.random.default_rng(args.seed)
    train = np.load(os.path.join(args.data, "cifar10", "train.npz"))
    rows = rng.permutation(len(train["y"]))
    representative = train["x"][rows[:args.calibration]].astype("float32") / 255.0
    test = np.load(os.path.join(args.data, "cifar10", "test.npz"))
    labels = test["y"][:args.n_cifar]
    sets = {
        "cifar10_test": test["x"][:args.n_cifar],
        "tinyimagenet_queries": np.load(os.path.join(args.data, "tinyimagenet", "queries.npz"))["x"][:args.n_tin],
    }
    sets = {k: v.astype("float32") / 255.0 for k, v in sets.items()}
    victim = keras.saving.load_model(args.victim)
    protected = keras_dcp.protect(victim, keras_dcp.DeceptionLayer(**defense))
    started = time.time()

    def export(model, **kwargs):
        return export_tflite(model, None, quantize="int8", representative=representative, **kwargs)

    plans = {} if args.skip_ptq else {
        "bare": lambda: export(victim, tail="int8"),
        # int8 weights, activations quantized on the fly per tensor: how far
        # the weights' own quantization already moves the victim.
        "bare dynamic-range": lambda: export_tflite(victim, None, quantize="dynamic"),
        "naive": lambda: export(protected, tail="int8"),
        "float-tail int8-io": lambda: export(protected),
        "float-tail float-io": lambda: export(protected, io_type="float"),
        "edgetpu": lambda: export(protect_for_edgetpu(victim, keras_dcp.DeceptionLayer(**defense)), tail="int8"),
    }
    models, conversion_errors = {}, {}
    for name, plan in plans.items():
        try:
            models[name] = plan()
        except RuntimeError as error:  # e.g. the converter's int8 scale constraints on the naive tail
            conversion_errors[name] = str(error).splitlines()[0] if str(error) else type(error).__name__
            print(f"{name}: conversion failed: {conversion_errors[name]}", flush=True)
    results = {"victim": args.victim, "defense": {**defense, "tau": tau}, "calibration": args.calibration,
               "n_cifar": args.n_cifar, "n_tin": args.n_tin, "date": time.strftime("%Y-%m-%d"), "sets": {},
               "conversion_errors": conversion_errors}
    for set_name, x in sets.items():
        results["sets"][set_name] = {}
        if not models:
            continue
        reference = protected.predict(x, batch_size=500, verbose=0)
        ref_probs = victim.predict(x, batch_size=500, verbose=0)
        bare = predict(models["bare"], x, batch_size=500)
        table = {}
        if set_name == "cifar10_test":
            table["keras float"] = {"accuracy": float(np.mean(reference.argmax(1) == labels))}
        for name, content in models.items():
            failed = None
            try:
                out = predict(content, x, batch_size=500)
            except RuntimeError as error:
                # The naive int8 tail can fail at run time (an int8 DIV whose
                # divisor rounds to zero); one row fails a whole batch, so go
                # row by row and report the share of rows that fail.
                out, failed = _predict_rows(content, x)
                table[name] = {"error": str(error).splitlines()[0]}
            target = ref_probs if name.startswith("bare") else reference
            keep = np.ones(len(x), bool) if failed is None else ~failed
            probs = out if name.startswith("bare") else bare  # the detector's input in this model
            row = compare(out[keep], target[keep], probs[keep], ref_probs[keep], tau) if keep.any() else {}
            if set_name == "cifar10_test" and keep.any():
                row["accuracy"] = float(np.mean(out[keep].argmax(1) == labels[keep]))
            if failed is not None:
                row.update(table[name], failed_rows=float(failed.mean()))
            table[name] = row
        results["sets"][set_name] = table
        print(set_name, json.dumps(table, indent=1), flush=True)

    if args.qat_samples:
        from keras_dcp import qat
        from keras_dcp.qat import mixup_images, most_faithful

        def train_one(seed):
            order = np.random.default_rng(seed).permutation(len(train["y"]))[:args.qat_samples]
            model = qat.quantize_model(qat.to_tf_keras(victim))
            history = qat.train_qat(
                model, train["x"][order].astype("float32") / 255.0, train["y"][order],
                epochs=args.qat_epochs, learning_rate=args.qat_lr, seed=seed, verbose=2, align=not args.no_align,
            )
            return model, history

        seeds = [int(v) for v in args.qat_seeds.split(",")] if args.qat_seeds else [args.seed]
        trained = [train_one(seed) for seed in seeds]
        selection = None
        if len(trained) > 1:
            # Check images from the defender's own data (never the sets judged below).
            check = mixup_images(train["x"][rows[:args.qat_samples]].astype("float32") / 255.0, args.qat_check,
                                 seed=args.seed)
            best, scores = most_faithful([m for m, _ in trained], check, keras_dcp.DeceptionLayer(**defense))
            selection = {"seeds": seeds, "chosen_seed": seeds[best], "check_rows": len(check),
                         "check_scores": scores}
            print("selection", json.dumps(selection), flush=True)
        qat_model, history = trained[0] if selection is None else trained[best]
        qat_protected = qat.protect_qat(qat_model, keras_dcp.DeceptionLayer(**defense))
        qat_models = {
            "qat float-tail int8-io": export(qat_protected),
            "qat float-tail float-io": export(qat_protected, io_type="float"),
        }
        results["qat"] = {"samples": args.qat_samples, "epochs": args.qat_epochs, "learning_rate": args.qat_lr,
                          "train_accuracy": float(history["accuracy"][-1]),
                          "aligned_layers": len(history.get("aligned_layers", [])), "selection": selection}
        for set_name, x in sets.items():
            reference = qat_protected.predict(x, batch_size=500, verbose=0)
            if set_name == "cifar10_test":
                results["sets"][set_name]["keras qat"] = {"accuracy": float(np.mean(reference.argmax(1) == labels))}
            for name, content in qat_models.items():
                out = predict(content, x, batch_size=500)
                if name == "qat float-tail int8-io":
                    # TFLite's builtin int8 kernels (XNNPACK off: what a
                    # device without XNNPACK runs) round differently.
                    builtin = fidelity(content, reference, x, xnnpack=False)
                    results["sets"][set_name][name + " builtin-kernels"] = {k: builtin[k] for k in ("agreement",
                                                                                                  "mean_l1")}
                results["sets"][set_name][name] = compare(out, reference)
                if set_name == "cifar10_test":
                    results["sets"][set_name][name]["accuracy"] = float(np.mean(out.argmax(1) == labels))
            print(set_name, json.dumps({k: v for k, v in results["sets"][set_name].items() if "qat" in k}, indent=1),
                  flush=True)
    results["seconds"] = round(time.time() - started, 1)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
