"""``keras-dcp demo``: the whole story offline in a few minutes.

Train a small victim on scikit-learn's digits, serve it with and without DCP,
steal it with KnockoffNets from soft labels (``knockoff``) and from top-1
labels only (``knockoff-label``), and print what each costs the defender and
the thief. The same JSON as ``keras-dcp evaluate``.
"""

from __future__ import annotations

import argparse

#: Demo sizes: about two minutes on two CPU cores for the digits preset.
DEMO_VICTIM_EPOCHS = 15
DEMO_CLONE_EPOCHS = 15
DEMO_BUDGET = 2000
DEMO_WIDTH = 16
DEMO_PLOT = "keras_dcp_demo.png"


def add_parser(subparsers, command):
    from keras_dcp.cli.common import add_clone_training_arguments, add_common_data_arguments, add_overwrite_argument

    parser = subparsers.add_parser(
        command,
        help="train a small victim and steal it with and without DCP (offline, minutes on a CPU)",
        description="Train a small CNN on DATASET (default: scikit-learn's digits, offline), then run "
        "KnockoffNets with soft labels and with top-1 labels only against the undefended and the "
        "DCP-protected victim. Prints the table and the thief's best response, saves the trade-off plot "
        "and optionally the JSON (the schema of `keras-dcp evaluate`).",
    )
    parser.add_argument("--dataset", default="digits",
                        help="a preset: digits (default), digits-indomain, cifar10-local, cifar10, svhn, ...")
    parser.add_argument("--queries", help="the thief's images instead of the preset's (dataset name, .npz, folder)")
    parser.add_argument("--defense", default="dcp", metavar="SPEC",
                        help="the defense compared with none (default dcp, e.g. dcp:beta=0.7,gamma=0.2)")
    parser.add_argument("--json", metavar="OUT.json", help="write the results here")
    parser.add_argument("--plot", metavar="OUT.png", default=DEMO_PLOT,
                        help=f"the trade-off plot (default {DEMO_PLOT}; 'none' to skip)")
    parser.add_argument("--arch", help="victim/clone architecture (default: small_cnn)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_clone_training_arguments(parser)
    # Size knobs for tests and quick looks; hidden to keep --help short.
    hidden = argparse.SUPPRESS
    parser.add_argument("--epochs", type=int, default=DEMO_VICTIM_EPOCHS, help=hidden)
    parser.add_argument("--clone-epochs", type=int, default=DEMO_CLONE_EPOCHS, help=hidden)
    parser.add_argument("--budget", type=int, default=DEMO_BUDGET, help=hidden)
    parser.add_argument("--max-train", type=int, help=hidden)
    parser.add_argument("--max-test", type=int, help=hidden)
    parser.add_argument("--width", type=int, default=DEMO_WIDTH, help=hidden)
    add_common_data_arguments(parser)
    add_overwrite_argument(parser)
    return parser


def run(args):
    import time

    import keras

    from keras_dcp import experiments
    from keras_dcp.cli.common import (
        apply_distribution,
        check_clone_training_arguments,
        check_flags_at_least,
        check_output_file,
    )
    from keras_dcp.data import load_preset
    from keras_dcp.defenses.registry import build_defense
    from keras_dcp.models import get_model
    from keras_dcp.training import accuracy, train_classifier

    started = time.perf_counter()
    check_flags_at_least(args, 1, "epochs", "clone-epochs", "budget", "max-train", "max-test", "width")
    check_clone_training_arguments(args)
    if build_defense(args.defense) is None:  # a bad spec fails before training
        raise ValueError("--defense none: the demo compares none with a defense; pick one (e.g. dcp).")
    plot = args.plot if args.plot and args.plot.lower() != "none" else None
    for flag, path in (("--json", args.json), ("--plot", plot)):
        if path:
            check_output_file(path, args.overwrite, flag=flag)
    strategy = apply_distribution(args.distribute)
    verbose = 0 if args.quiet else 1

    data = load_preset(
        args.dataset, args.data_dir, args.download, queries=args.queries,
        max_train=args.max_train, max_test=args.max_test, max_queries=args.budget, seed=args.seed,
    )
    preset = data["preset"]
    x_train, y_train, x_test, y_test = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    x_queries = data["x_queries"]
    budget = len(x_queries)

    arch = args.arch or "small_cnn"
    width = {"width": args.width} if arch in ("small_cnn", "resnet20", "resnet32") else {}

    def make_model():
        return get_model(arch, preset.input_shape, preset.num_classes, **width)

    print(f"[1/3] training the victim: {arch} on {len(x_train)} {preset.name} images "
          f"({args.epochs} epochs)")
    keras.utils.set_random_seed(args.seed)
    victim = make_model()
    train_classifier(
        victim, x_train, y_train, epochs=args.epochs, batch_size=64, learning_rate=0.05,
        flip=preset.flip, seed=args.seed, verbose=2 if verbose else 0, strategy=strategy,
    )
    print(f"      victim test accuracy {accuracy(victim, x_test, y_test):.4f} ({len(x_test)} images)")
    queries_name = args.queries or preset.queries
    print(f"[2/3] stealing it: KnockoffNets with {budget} queries from {queries_name}, soft and label-only, "
          f"against none and {args.defense}")
    results = experiments.run_experiment(
        victim, x_test, y_test, x_queries,
        defenses=["none", args.defense], attacks=["knockoff", "knockoff-label"], budget=budget,
        make_clone=make_model, epochs=args.clone_epochs, batch_size=64, learning_rate=0.1,
        seed=args.seed, dataset=preset.name, verbose=verbose, distribute_strategy=strategy,
        parallel_clones=args.parallel_clones, precision=args.precision,
    )
    results["config"].update({"command": "demo", "queries": queries_name, "victim_epochs": args.epochs})
    print("[3/3] results\n")
    print(experiments.format_table(results))
    print(_verdict(results))
    if args.json:
        experiments.save_results(results, args.json)
        print(f"wrote {args.json}")
    if plot:
        experiments.plot_tradeoff(results, plot)
        print(f"wrote {plot}")
    print(f"demo took {time.perf_counter() - started:.0f} s")
    return 0


def _verdict(results):
    """Two sentences on what the numbers say (computed, never canned)."""
    runs = {(r["defense"], r["attack"]): r for r in results["runs"]}
    defense = next(r["defense"] for r in results["runs"] if r["defense"] != "none")
    none_soft, def_soft = runs[("none", "knockoff")], runs[(defense, "knockoff")]
    none_label, def_label = runs[("none", "knockoff-label")], runs[(defense, "knockoff-label")]
    best = next(b for b in results["best_responses"] if b["defense"] == defense)
    from keras_dcp.attacks.registry import attack_class

    label_only = attack_class(best["attack"]).label_only
    lines = [
        "",
        f"{defense}: benign accuracy {none_soft['defender_accuracy']:.4f} -> {def_soft['defender_accuracy']:.4f}; "
        f"it changed {def_soft['perturbed_fraction']:.0%} of the thief's answers "
        f"(mean l1 {def_soft['l1_distance']:.3f}).",
        f"soft-label clone {none_soft['attacker_accuracy']:.4f} -> {def_soft['attacker_accuracy']:.4f}; "
        f"label-only clone {none_label['attacker_accuracy']:.4f} -> {def_label['attacker_accuracy']:.4f}.",
        f"The thief's best response against {defense} is {best['attack']} at {best['attacker_accuracy']:.4f}"
        + (" (top-1 labels only: a defense that keeps top-1 cannot stop it)." if label_only else "."),
        "",
    ]
    return "\n".join(lines)
