"""``keras-dcp evaluate``: attack a victim under each defense; JSON, table and trade-off plot."""

from __future__ import annotations

ATTACK_NAMES = ("knockoff", "knockoff-label", "maze", "dfme")


def add_common_data_arguments(parser):
    parser.add_argument("--data-dir", help="where datasets live (tfds folder, GTSRB root, shared .npz folder)")
    parser.add_argument("--download", action="store_true",
                        help="let tensorflow-datasets download missing data (off: a clear error instead)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--distribute", default="none", choices=("none", "mirrored", "data-parallel"),
                        help="train on every visible GPU: mirrored (tf.distribute, TensorFlow backend) or "
                        "data-parallel (keras.distribution, JAX backend); default none")


def add_parser(subparsers, command):
    parser = subparsers.add_parser(
        command,
        help="measure what each defense costs benign users and a model thief",
        description="Serve VICTIM behind each defense setting, run each attack against it with the same "
        "query budget, and report defender accuracy, clone accuracy, agreement, answer distortion and the "
        "thief's best response. 'none' (the undefended victim) is always run as the baseline.",
    )
    parser.add_argument("--victim", required=True, help="the undefended victim, a .keras file (probabilities out)")
    parser.add_argument("--dataset", required=True,
                        help="the victim's test data: a preset (digits, cifar10, cifar10-local, svhn, gtsrb, ...), "
                        "a tfds name, a .npz file or a folder")
    parser.add_argument("--test-split", default="test", help="split of --dataset to test on (default test)")
    parser.add_argument("--queries", help="the thief's images: dataset name, .npz or folder (default: the preset's)")
    parser.add_argument("--query-split", help="split of --queries (default: query/queries if present, else train)")
    parser.add_argument("--attack", action="append", choices=ATTACK_NAMES,
                        help="attack to run; repeatable (default: knockoff and knockoff-label)")
    parser.add_argument("--defense", action="append", metavar="SPEC",
                        help="defense setting, e.g. none, dcp, dcp:beta=0.7,gamma=0.2, rs:beta=0.5; repeatable "
                        "(default: none and dcp)")
    parser.add_argument("--sweep", action="append", metavar="GRID",
                        help="a defense over a grid, values separated by '/': dcp:beta=0.3/0.5/0.7,gamma=0.2; a bare "
                        "name (dcp, rs, rounding, topk) uses a default grid; repeatable; draws the trade-off plot")
    parser.add_argument("--budget", type=int, help="queries per attack (default: all query images)")
    parser.add_argument("--json", metavar="OUT.json", help="write the results here")
    parser.add_argument("--plot", metavar="OUT.png", help="draw the trade-off plot here")
    parser.add_argument("--epochs", type=int, default=10, help="clone training epochs (default 10)")
    parser.add_argument("--batch-size", type=int, default=64, help="clone training batch (default 64)")
    parser.add_argument("--learning-rate", type=float, default=0.1, help="clone SGD learning rate (default 0.1)")
    parser.add_argument("--clone-arch", help="clone architecture from the zoo (resnet20, resnet32, small_cnn, "
                        "mobilenet_v2); default: the victim's architecture with fresh weights")
    parser.add_argument("--max-test", type=int, help="evaluate on a seeded random subset of this many test images")
    parser.add_argument("--max-queries", type=int, help="keep a seeded random subset of this many query images")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_common_data_arguments(parser)
    return parser


def check_positive(name, value):
    if value is not None and value < 1:
        raise ValueError(f"{name} must be >= 1; got {value}.")


def run(args):
    import keras

    import keras_dcp  # noqa: F401  (registers the defense layers for loading)
    from keras_dcp import experiments
    from keras_dcp.data.images import match_shape
    from keras_dcp.experiments.setup import (
        apply_distribution,
        defense_specs,
        load_query_images,
        load_victim_split,
        subset,
    )
    from keras_dcp.models import get_model

    for name in ("--budget", "--epochs", "--batch-size", "--max-test", "--max-queries"):
        check_positive(name, getattr(args, name[2:].replace("-", "_")))
    attacks = args.attack or ["knockoff", "knockoff-label"]
    attacks = list(dict.fromkeys(attacks))
    defenses = defense_specs(args.defense, args.sweep)
    for spec in defenses:  # fail fast on a bad spec, before loading anything
        keras_dcp.build_defense(spec)

    strategy = apply_distribution(args.distribute)
    try:
        victim = keras.saving.load_model(args.victim, compile=False, safe_mode=True)
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot load the victim {args.victim!r}: {error}") from None
    input_shape = tuple(victim.input_shape[1:])

    x_test, y_test, preset = load_victim_split(args.dataset, args.test_split, args.data_dir, args.download)
    x_test, y_test = subset(x_test, y_test, args.max_test, args.seed)
    x_test = match_shape(x_test, input_shape)
    if y_test.min() < 0:
        raise ValueError(f"The test split of {args.dataset!r} has no labels.")
    x_queries = None
    if any(a.startswith("knockoff") for a in attacks):
        x_queries = load_query_images(args.queries, preset, args.query_split, args.data_dir, args.download)
        x_queries, _ = subset(x_queries, None, args.max_queries, args.seed)
        x_queries = match_shape(x_queries, input_shape)
    elif args.budget is None:
        raise ValueError("MAZE and DFME need --budget.")

    make_clone = None
    if args.clone_arch:
        num_classes = int(victim.output_shape[-1])

        def make_clone():
            return get_model(args.clone_arch, input_shape, num_classes)

        make_clone()  # an unknown name fails here, before any attack
    results = experiments.run_experiment(
        victim, x_test, y_test, x_queries,
        defenses=defenses, attacks=attacks, budget=args.budget, make_clone=make_clone,
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
        dataset=args.dataset, verbose=0 if args.quiet else 1, distribute_strategy=strategy,
    )
    results["config"]["command"] = "evaluate"
    results["config"]["queries"] = args.queries or (preset.queries if preset else None)
    print(experiments.format_table(results))
    if args.json:
        experiments.save_results(results, args.json)
        print(f"\nwrote {args.json}")
    plot = args.plot
    if plot is None and args.sweep:
        plot = (args.json[: -len(".json")] if args.json and args.json.endswith(".json") else "tradeoff") + ".png"
    if plot:
        experiments.plot_tradeoff(results, plot)
        print(f"wrote {plot}")
    return 0

