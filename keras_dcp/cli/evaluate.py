"""``keras-dcp evaluate``: attack a victim under each defense; JSON, table and trade-off plot."""

from __future__ import annotations

from keras_dcp.cli.common import add_clone_training_arguments, add_common_data_arguments, add_overwrite_argument


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
    parser.add_argument("--attack", action="append", metavar="NAME",
                        help="attack to run, a name of keras_dcp.attacks.ATTACKS (knockoff, knockoff-label, maze, "
                        "dfme, ...); repeatable (default: knockoff and knockoff-label)")
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
    add_clone_training_arguments(parser)
    add_common_data_arguments(parser)
    add_overwrite_argument(parser)
    return parser


def default_plot_path(args) -> str | None:
    """``--plot``, else ``OUT.png`` beside ``--json OUT.json`` (or ``tradeoff.png``) when sweeping."""
    if args.plot is not None or not args.sweep:
        return args.plot
    return (args.json[: -len(".json")] if args.json and args.json.endswith(".json") else "tradeoff") + ".png"


def run(args):
    from keras_dcp import experiments
    from keras_dcp.attacks.registry import attack_class
    from keras_dcp.cli.common import (
        apply_distribution,
        check_clone_training_arguments,
        check_flags_at_least,
        check_labels,
        check_output_file,
        load_labeled,
        load_queries,
    )
    from keras_dcp.data.images import match_shape
    from keras_dcp.defenses.registry import build_defense
    from keras_dcp.model_io import load_keras_model
    from keras_dcp.models import get_model

    check_flags_at_least(args, 1, "budget", "epochs", "batch-size", "max-test", "max-queries")
    check_clone_training_arguments(args)
    attacks = list(dict.fromkeys(args.attack or ["knockoff", "knockoff-label"]))
    classes = [attack_class(name) for name in attacks]  # unknown names fail here, listing the known ones
    defenses = experiments.defense_specs(args.defense, args.sweep)
    for spec in defenses:  # fail fast on a bad spec, before loading anything
        build_defense(spec)
    plot = default_plot_path(args)
    for flag, path in (("--json", args.json), ("--plot", plot)):
        if path:
            check_output_file(path, args.overwrite, flag=flag)

    strategy = apply_distribution(args.distribute)
    victim = load_keras_model(args.victim, what="victim")
    input_shape = tuple(victim.input_shape[1:])
    num_classes = int(victim.output_shape[-1])

    x_test, y_test, preset = load_labeled(args.dataset, args.test_split, args.data_dir, args.download,
                                          limit=args.max_test, seed=args.seed)
    x_test = match_shape(x_test, input_shape)
    check_labels(y_test, num_classes, f"The {args.test_split!r} split of {args.dataset!r}")
    x_queries = None
    if any(cls.needs_query_images for cls in classes):
        x_queries = load_queries(args.queries, preset, args.query_split, args.data_dir, args.download,
                                 limit=args.max_queries, seed=args.seed)
        x_queries = match_shape(x_queries, input_shape)
    elif args.budget is None:
        raise ValueError(f"{', '.join(attacks)} generate their own queries: give --budget.")

    make_clone = None
    if args.clone_arch:
        def make_clone():
            return get_model(args.clone_arch, input_shape, num_classes)

        make_clone()  # an unknown name fails here, before any attack
    results = experiments.run_experiment(
        victim, x_test, y_test, x_queries,
        defenses=defenses, attacks=attacks, budget=args.budget, make_clone=make_clone,
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
        dataset=args.dataset, verbose=0 if args.quiet else 1, distribute_strategy=strategy,
        parallel_clones=args.parallel_clones, precision=args.precision,
    )
    results["config"]["command"] = "evaluate"
    results["config"]["queries"] = args.queries or (preset.queries if preset else None)
    print(experiments.format_table(results))
    if args.json:
        experiments.save_results(results, args.json)
        print(f"\nwrote {args.json}")
    if plot:
        experiments.plot_tradeoff(results, plot)
        print(f"wrote {plot}")
    return 0
