"""``keras-dcp export MODEL.keras -o OUT.tflite``: TFLite export, quantized or not."""

from __future__ import annotations

from keras_dcp.cli.common import add_overwrite_argument


def add_parser(subparsers, command):
    parser = subparsers.add_parser(
        command,
        help="export a (protected) .keras model to .tflite (float, fp16, dynamic or int8)",
        description="Convert MODEL (.keras) to a TFLite flatbuffer. int8 is full integer "
        "(int8 input and output) and needs --representative. With --defense the model is "
        "protected first (as `keras-dcp protect` would).",
    )
    parser.add_argument("model", help="a .keras model (protected or not)")
    parser.add_argument("-o", "--output", required=True, help="the .tflite file to write")
    parser.add_argument("--quantize", choices=("none", "fp16", "dynamic", "int8"), default="none")
    parser.add_argument(
        "--representative",
        help="calibration data for int8: an .npz with an `x` array, or a dataset name "
        "(cifar10, mnist: ../shared/data/<name>/train.npz; or any keras_dcp.data name)",
    )
    parser.add_argument("--num-calibration", type=int, default=500, help="representative samples used (default 500)")
    parser.add_argument(
        "--input-range", choices=("unit", "raw"), default="unit",
        help="uint8 representative images are divided by 255 (unit, the zoo's [0, 1] inputs) or fed as-is (raw)",
    )
    parser.add_argument("--io", choices=("int8", "float"), default="int8",
                        help="int8 model: int8 (default) or float32 input/output")
    parser.add_argument("--tail", choices=("float", "int8"), default=None,
                        help="int8 model: keep head + softmax + defense in float32 (default) or all int8")
    parser.add_argument("--defense", help="protect first with this defense spec (e.g. dcp:beta=0.7)")
    parser.add_argument("--edgetpu", action="store_true",
                        help="Edge TPU formulation of DCP (all int8, Edge TPU ops only); implies --quantize int8 --tail int8")
    faithful = parser.add_argument_group(
        "faithful int8 (with --train): the int8 model is trained to reproduce the float protected model "
        "(QAT as distillation from it), so it answers like the model you evaluated")
    faithful.add_argument("--train", metavar="TRAIN.npz",
                          help="the defender's training images (.npz with `x`: uint8 images, converted to the "
                          "model's input as `keras-dcp evaluate` does); selects the faithful int8 path")
    faithful.add_argument("--train-max", type=int, default=20000,
                          help="use at most this many training images (seeded subset; default 20000)")
    faithful.add_argument("--qat-epochs", type=int, default=2, help="distillation epochs (default 2)")
    faithful.add_argument("--qat-seeds", type=int, default=1,
                          help="candidates trained with seeds SEED..SEED+N-1; the one closest to the float model on "
                          "mixup check images is kept (default 1)")
    faithful.add_argument("--seed", type=int, default=0, help="seed of the subset, mixup and candidates (default 0)")
    faithful.add_argument("--report", metavar="REPORT.json", help="write the fidelity report here")
    add_overwrite_argument(parser)
    return parser


def load_training_images(path, input_shape, limit=None, seed=0):
    """``x`` of a training ``.npz``, brought to the model's input (shape, then float ``[0, 1]``)."""
    import os
    import zipfile

    import numpy as np

    from keras_dcp.data import match_shape, subset, to_float

    if not os.path.isfile(path) or not path.endswith(".npz"):
        raise ValueError(f"--train {path!r} must be an existing .npz file with an `x` array of images.")
    try:
        with np.load(path) as data:
            if "x" not in data:
                raise ValueError(f"--train {path}: the .npz has no `x` array (keys: {', '.join(data.files)}).")
            x = data["x"]
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"--train {path!r} cannot be read as .npz ({error}).") from None
    if len(x) < 2:
        raise ValueError(f"--train {path}: needs at least two images; got {len(x)}.")
    x, _ = subset(x, None, limit, seed)
    return to_float(match_shape(x, input_shape))


def load_representative(spec, input_range="unit", limit=None):
    """The representative array named by ``spec``.

    ``spec`` is an ``.npz`` file with an ``x`` array, a folder of the shared
    data (``cifar10`` reads ``<shared data>/cifar10/train.npz``, see
    :func:`keras_dcp.data.shared_data_dir`), or any name
    :func:`keras_dcp.data.load_dataset` knows (its train split). uint8 images
    become ``x / 255`` with ``input_range="unit"`` (the zoo's ``[0, 1]`` inputs);
    only the first ``limit`` rows are kept.
    """
    import os
    import zipfile

    import numpy as np

    if spec is None:
        return None
    if os.path.isfile(spec):
        if not spec.endswith(".npz"):
            raise ValueError(f"--representative {spec!r} is not an .npz file (arrays `x`, and optionally `y`).")
        try:
            with np.load(spec) as data:
                if "x" not in data:
                    raise ValueError(
                        f"--representative {spec}: the .npz has no `x` array (keys: {', '.join(data.files)})."
                    )
                x = data["x"]
        except (OSError, zipfile.BadZipFile, EOFError) as error:
            raise ValueError(f"--representative {spec!r} cannot be read as .npz ({error}).") from None
    else:
        from keras_dcp.data import load_dataset, shared_data_dir

        shared = os.path.join(shared_data_dir(), spec, "train.npz")
        x, _ = load_dataset(f"shared:{spec}" if os.path.isfile(shared) else spec, split="train")
    x = np.asarray(x)[:limit]
    if not np.issubdtype(x.dtype, np.number) or x.ndim < 2 or len(x) == 0:
        raise ValueError(f"--representative {spec!r}: `x` must be a non-empty numeric array; got {x.dtype} {x.shape}.")
    if x.dtype == np.uint8 and input_range == "unit":
        return x.astype("float32") / 255.0
    return x.astype("float32")


def run(args):
    from keras_dcp.cli.common import atomic_output, check_flags_at_least, check_output_file
    from keras_dcp.model_io import load_keras_model
    from keras_dcp.tflite import export_tflite, protect_for_edgetpu

    check_flags_at_least(args, 1, "num-calibration", "train-max", "qat-epochs", "qat-seeds")
    check_output_file(args.output, args.overwrite)
    if args.report:
        check_output_file(args.report, args.overwrite, flag="--report")
    if args.train and (args.quantize != "int8" or args.edgetpu or args.tail == "int8"):
        raise ValueError("--train selects the faithful int8 path: use it with --quantize int8 (float tail).")
    quantize, tail = args.quantize, args.tail or "float"
    defense = None
    if args.defense:
        from keras_dcp.defenses.registry import build_defense

        defense = build_defense(args.defense)
    model = load_keras_model(args.model)
    if args.edgetpu:
        from keras_dcp.defenses.deception import DeceptionLayer

        if defense is not None and not isinstance(defense, DeceptionLayer):
            raise ValueError("--edgetpu protects with DCP only (--defense dcp:...).")
        model = protect_for_edgetpu(model, defense)
        quantize, tail = "int8", "int8"
    elif defense is not None:
        from keras_dcp.protect import protect

        model = protect(model, defense)
    representative = load_representative(args.representative, args.input_range, args.num_calibration)
    if args.train:
        return _export_faithful(args, model, representative)
    with atomic_output(args.output) as temporary:
        try:
            content = export_tflite(
                model, temporary, quantize=quantize, representative=representative,
                io_type=args.io, tail=tail, num_calibration=args.num_calibration,
            )
        except RuntimeError as error:  # the TFLite converter's own failures
            lines = [line for line in str(error).splitlines() if "error" in line.lower()] or [str(error)]
            raise ValueError(f"The TFLite converter failed on {args.model!r}: {lines[0].strip()}") from None
    print(f"wrote {args.output} ({len(content) / 1024:.0f} KiB, quantize={quantize}"
          + (f", io={args.io}, tail={tail}" if quantize == "int8" else "") + ")")
    return 0


def _export_faithful(args, model, representative):
    """``--train``: :func:`keras_dcp.qat.faithful_int8`, then the report of its fidelity to the float model."""
    import json

    from keras_dcp.cli.common import atomic_output
    from keras_dcp.qat.distill import faithful_int8, split_protected_keras

    split_protected_keras(model)  # a clear error before any training if the model is not protected
    x_train = load_training_images(args.train, tuple(model.input_shape[1:]), args.train_max, args.seed)
    print(f"faithful int8: {args.qat_seeds} candidate(s), each distilled from the float model on {len(x_train)} "
          f"training images and as many mixup blends for {args.qat_epochs} epoch(s)", flush=True)
    content, report = faithful_int8(
        model, x_train, io_type=args.io, epochs=args.qat_epochs, seeds=range(args.seed, args.seed + args.qat_seeds),
        calibration=representative, verbose=1,
    )
    with atomic_output(args.output) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(content)
    chosen = next(c for c in report["candidates"] if c["seed"] == report["chosen_seed"])
    print(f"wrote {args.output} ({len(content) / 1024:.0f} KiB, faithful int8 from {report['train_rows']} "
          f"training images, io={args.io}); against the float protected model on {report['check_rows']} "
          f"mixup check images: agreement {chosen['export_vs_float']['agreement']:.4f}, "
          f"mean l1 {chosen['export_vs_float']['mean_l1']:.4f}")
    if args.report:
        with atomic_output(args.report) as temporary:
            with open(temporary, "w") as handle:
                json.dump(report, handle, indent=1)
        print(f"wrote {args.report}")
    return 0
