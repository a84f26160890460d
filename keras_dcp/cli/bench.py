"""``keras-dcp bench layer|model``: latency of the defense layers alone, or of whole protected models (not a test)."""

from __future__ import annotations

#: Flags that belong to one of the two benchmarks only, with their "unset" value.
LAYER_ONLY = {"classes": None, "seconds": None, "no_art": False}
MODEL_ONLY = {"model": None, "defense": None, "runtime": None, "rounds": None, "runs": None, "warmup": None,
              "threads": None, "no_litert_tool": False}


def add_parser(subparsers, command):
    parser = subparsers.add_parser(
        command,
        help="micro-benchmarks (timings belong here, never in tests)",
        description="bench layer: time the defense layers alone, beside ART's numpy ReverseSigmoid if installed. "
        "bench model: time a whole protected model per query for each --defense, --runtime and --batch, "
        "interleaving the defenses in rounds, with ratios to none and dcp measured in the same run.",
    )
    parser.add_argument("what", choices=["layer", "model"], help="what to time")
    parser.add_argument("--batch", type=int, nargs="+", action="extend",
                        help="batch sizes (repeatable; default: layer 1 4096, model 1)")
    parser.add_argument("--json", help="also write the results here (JSON)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    layer = parser.add_argument_group("bench layer")
    layer.add_argument("--classes", type=int, help="number of classes K (default 10)")
    layer.add_argument("--seconds", type=float, help="minimum timing per measurement (default 1)")
    layer.add_argument("--no-art", action="store_true", help="skip ART even if installed")
    model = parser.add_argument_group("bench model")
    model.add_argument("--model", help="the victim, a .keras file")
    model.add_argument("--defense", action="append",
                       help="a defense spec to time, repeatable (default: none and dcp); e.g. none, dcp, "
                       "rs:beta=0.5, mad:eps=0.5, mad:eps=0.5,objective=jacobian, am:tau=0.7[,model=F.keras]")
    model.add_argument("--runtime", action="append", choices=["keras", "tflite"],
                       help="keras (tf.function) and/or tflite (LiteRT CompiledModel, float export); "
                       "repeatable (default keras)")
    model.add_argument("--rounds", type=int, help="interleaved rounds (default 5)")
    model.add_argument("--runs", type=int, help="timed calls per defense and round (default 10)")
    model.add_argument("--warmup", type=int, help="untimed calls before timing (default 3)")
    model.add_argument("--threads", type=int, help="TFLite CPU threads (default 1)")
    model.add_argument("--no-litert-tool", action="store_true",
                       help="skip the cross-check with LiteRT's benchmark_litert_model (once per .tflite file)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (bench model)")
    return parser


def _refuse_other_flags(args, flags, what):
    given = [name for name, unset in flags.items() if getattr(args, name) not in (unset,)]
    if given:
        listed = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ValueError(f"{listed} only apply to the other benchmark, not to `bench {what}`.")


def run(args):
    from keras_dcp.cli.common import check_output_file

    if args.batch is not None and any(b < 1 for b in args.batch):
        raise ValueError(f"--batch values must be >= 1; got {args.batch}.")
    if args.json:
        check_output_file(args.json, args.overwrite, flag="--json")
    if args.what == "layer":
        _refuse_other_flags(args, MODEL_ONLY, "layer")
        return _run_layer(args)
    _refuse_other_flags(args, LAYER_ONLY, "model")
    return _run_model(args)


def _run_layer(args):
    import json
    import platform

    from keras_dcp.bench import format_table, layer_speed
    from keras_dcp.cli.common import atomic_output

    classes = 10 if args.classes is None else args.classes
    seconds = 1.0 if args.seconds is None else args.seconds
    if classes < 2:
        raise ValueError(f"--classes must be >= 2; got {classes}.")
    if not seconds > 0:
        raise ValueError(f"--seconds must be > 0; got {seconds}.")
    results = layer_speed(args.batch or [1, 4096], classes, min_seconds=seconds, with_art=not args.no_art)
    print(format_table(results))
    if args.json:
        with atomic_output(args.json) as temporary, open(temporary, "w") as handle:
            json.dump({"machine": platform.platform(), "processor": platform.processor(), "results": results},
                      handle, indent=2)
    return 0


def _run_model(args):
    import json

    from keras_dcp.benchmarking import bench_model, format_bench_table
    from keras_dcp.cli.common import atomic_output, check_flags_at_least
    from keras_dcp.defenses.registry import parse_spec
    from keras_dcp.model_io import load_keras_model

    if not args.model:
        raise ValueError("bench model needs --model V.keras (the victim to protect and time).")
    check_flags_at_least(args, 1, "rounds", "runs", "threads")
    check_flags_at_least(args, 0, "warmup")
    defenses = args.defense or ["none", "dcp"]
    for spec in defenses:
        parse_spec(spec)  # bad specs fail before the model is loaded
    victim = load_keras_model(args.model, what="model")
    results = bench_model(
        victim,
        defenses=defenses,
        runtimes=args.runtime or ["keras"],
        batches=args.batch or [1],
        rounds=5 if args.rounds is None else args.rounds,
        runs=10 if args.runs is None else args.runs,
        warmup=3 if args.warmup is None else args.warmup,
        threads=1 if args.threads is None else args.threads,
        seed=args.seed,
        use_litert_tool=not args.no_litert_tool,
        model_name=args.model,
    )
    print(format_bench_table(results))
    if args.json:
        with atomic_output(args.json) as temporary, open(temporary, "w") as handle:
            json.dump(results, handle, indent=2)
        print(f"wrote {args.json}")
    return 0
