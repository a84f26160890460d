"""Attack benchmark on real data: a CIFAR-10 victim, Tiny-ImageNet queries, several budgets.

Not a test. For each attack and budget it steals a clone from the (by default
undefended) victim through a metered ``BlackBox`` and reports the clone's
CIFAR-10 test accuracy, its agreement with the victim, the queries spent and
the wall time. With ``--art`` it also runs IBM ART's ``KnockoffNets`` on the
same victim, query set, budget, clone architecture, optimizer and epochs, side
by side with ours.

Reduced run (CPU, minutes)::

    python benchmarks/attacks_cifar10.py --budgets 5000 --epochs 3 --attacks knockoff \
        --art --test-size 2000 --out /tmp/attacks_cifar10.json

Paper-scale run (GPU)::

    python benchmarks/attacks_cifar10.py --victim /work/cache/victims/resnet20_cifar10.keras \
        --budgets 1000,5000,10000,20000 --epochs 30 --attacks knockoff,knockoff-hard,label-only,adaptive \
        --zo-attacks maze,dfme --zo-budgets 1000000,5000000 --art --out results/attacks_cifar10.json

Data: ``../shared/data/cifar10/{train,test}.npz`` and
``../shared/data/tinyimagenet/queries.npz`` (uint8 NHWC, scaled to [0, 1]).
The victim: ``--victim PATH.keras``; without it the first existing default
path is used, else a small CNN is trained on the CIFAR-10 training split
(``--victim-epochs``) as a stand-in. MAZE, DFME and ART need TensorFlow; the
KnockoffNets rows also run under ``KERAS_BACKEND=jax``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

DEFAULT_DATA = os.path.join(REPO, "..", "shared", "data")
DEFAULT_VICTIMS = (
    "/work/cache/victims/resnet20_cifar10.keras",
    "/work/cache/victims/resnet20_cifar10_dev.keras",
)
KNOCKOFF_ATTACKS = ("knockoff", "knockoff-hard", "label-only", "adaptive")
ZO_ATTACKS = ("maze", "dfme")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--victim", help="trained victim (.keras); default: first of %s" % (DEFAULT_VICTIMS,))
    parser.add_argument("--victim-epochs", type=int, default=15, help="epochs of the fallback victim")
    parser.add_argument("--victim-save", help="where to save the fallback victim (.keras)")
    parser.add_argument("--defense", default="none", help='defense spec, e.g. "dcp:beta=0.7,gamma=0.2" (default none)')
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder with cifar10/ and tinyimagenet/")
    parser.add_argument("--budgets", default="1000,5000", help="KnockoffNets budgets, comma separated")
    parser.add_argument("--attacks", default="knockoff,label-only", help=f"from {','.join(KNOCKOFF_ATTACKS)}")
    parser.add_argument("--zo-attacks", default="", help=f"data-free attacks, from {','.join(ZO_ATTACKS)}")
    parser.add_argument("--zo-budgets", default="100000", help="MAZE / DFME budgets, comma separated")
    parser.add_argument("--epochs", type=int, default=10, help="KnockoffNets (and ART) training epochs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--augment", action="store_true", help="KnockoffNets trains with crops and flips")
    parser.add_argument("--steps-per-execution", type=int, default=1, help="KnockoffNets compile option (GPU: 16)")
    parser.add_argument("--clone", default="resnet20", help="clone architecture (keras_dcp.models name)")
    parser.add_argument("--art", action="store_true", help="also run IBM ART's KnockoffNets (random, soft)")
    parser.add_argument("--art-budgets", help="budgets for the ART comparison (default: --budgets)")
    parser.add_argument("--test-size", type=int, default=10000, help="CIFAR-10 test images to evaluate on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("--out", help="write all results as JSON here (rewritten after each row)")
    return parser.parse_args(argv)


def load_npz(path):
    with np.load(path) as data:
        return data["x"], data["y"]


def to_float(x_uint8):
    return (x_uint8.astype("float32") / 255.0).astype("float32")


def make_clone_factory(name, input_shape, num_classes):
    import keras

    try:
        from keras_dcp.models import get_model
    except ImportError:
        get_model = None

    def make_clone():
        if get_model is not None:
            return get_model(name, input_shape=input_shape, num_classes=num_classes)
        return fallback_cnn(input_shape, num_classes)

    if get_model is None:
        print(f"keras_dcp.models not available: clones are the fallback CNN, not {name}", file=sys.stderr)
    keras.utils.set_random_seed(0)
    return make_clone


def fallback_cnn(input_shape, num_classes, width=32):
    """A small VGG-style CNN (conv-BN-ReLU x2, pool) x 3 -> softmax."""
    import keras

    x = inputs = keras.Input(shape=input_shape)
    for filters in (width, 2 * width, 4 * width):
        for _ in range(2):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="fallback_cnn")


def load_or_train_victim(args, data_dir):
    import keras

    import keras_dcp  # noqa: F401  (registers the defense layers)

    candidates = [args.victim] if args.victim else list(DEFAULT_VICTIMS)
    for path in candidates:
        if path and os.path.exists(path):
            print(f"victim: {path}")
            return keras.saving.load_model(path, compile=False), path
    if args.victim:
        raise SystemExit(f"--victim {args.victim} does not exist")
    print(f"no trained victim found; training the fallback CNN for {args.victim_epochs} epochs")
    x_train, y_train = load_npz(os.path.join(data_dir, "cifar10", "train.npz"))
    keras.utils.set_random_seed(args.seed)
    model = fallback_cnn(x_train.shape[1:], 10)
    steps = args.victim_epochs * int(np.ceil(len(x_train) / 128))
    model.compile(
        optimizer=keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.05, steps), momentum=0.9, nesterov=True),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(to_float(x_train), y_train, batch_size=128, epochs=args.victim_epochs, verbose=args.verbose)
    if args.victim_save:
        model.save(args.victim_save)
    return model, "fallback_cnn (trained here)"


def run_ours(name, make_clone, served, victim, queries, query_labels, budget, x_test, y_test, args, augment=None):
    from keras_dcp import attacks

    augment = args.augment if augment is None else augment
    black_box = attacks.BlackBox(served, budget=budget)
    common = dict(seed=args.seed, verbose=args.verbose)
    if name in KNOCKOFF_ATTACKS:
        kwargs = dict(common, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                      augment=augment, steps_per_execution=args.steps_per_execution)
        if name == "knockoff":
            attack = attacks.KnockoffNets(make_clone, **kwargs)
        elif name == "knockoff-hard":
            attack = attacks.KnockoffNets(make_clone, labels="hard", **kwargs)
        elif name == "label-only":
            attack = attacks.KnockoffNetsLabelOnly(make_clone, **kwargs)
        else:
            attack = attacks.KnockoffNets(make_clone, strategy="adaptive", **kwargs)
        started = time.perf_counter()
        extra = {"query_labels": query_labels} if name == "adaptive" else {}
        clone = attack.extract(black_box, queries, budget=budget, **extra)
    else:
        attack = (attacks.MAZE if name == "maze" else attacks.DFME)(make_clone, **common)
        started = time.perf_counter()
        clone = attack.extract(black_box, budget=budget)
    seconds = time.perf_counter() - started
    report = attacks.evaluate_clone(clone, black_box, x_test, y_test, undefended=victim)
    return dict(report, seconds=seconds)


def run_art(make_clone, victim, queries, budget, x_test, y_test, args):
    """IBM ART's KnockoffNets (random sampling, soft labels) with the same clone, optimizer and epochs."""
    import keras
    from art.attacks.extraction import KnockoffNets as ArtKnockoffNets
    from art.estimators.classification import TensorFlowV2Classifier

    from keras_dcp.attacks import reference_sgd

    num_classes = victim.output_shape[-1]
    input_shape = tuple(victim.input_shape[1:])
    keras.utils.set_random_seed(args.seed)
    np.random.seed(args.seed)
    art_victim = TensorFlowV2Classifier(
        model=victim, nb_classes=num_classes, input_shape=input_shape, clip_values=(0.0, 1.0)
    )
    clone = make_clone()
    steps = args.epochs * int(np.ceil(budget / args.batch_size))
    art_clone = TensorFlowV2Classifier(
        model=clone,
        nb_classes=num_classes,
        input_shape=input_shape,
        loss_object=keras.losses.CategoricalCrossentropy(),
        optimizer=reference_sgd(args.learning_rate, total_steps=steps),
        clip_values=(0.0, 1.0),
    )
    attack = ArtKnockoffNets(
        classifier=art_victim,
        batch_size_fit=args.batch_size,
        batch_size_query=256,
        nb_epochs=args.epochs,
        nb_stolen=budget,
        sampling_strategy="random",
        use_probability=True,
        verbose=False,
    )
    started = time.perf_counter()
    attack.extract(x=queries, thieved_classifier=art_clone)
    seconds = time.perf_counter() - started
    predictions = clone.predict(x_test, batch_size=256, verbose=0)
    victim_top1 = np.argmax(victim.predict(x_test, batch_size=256, verbose=0), axis=1)
    return {
        "attacker_accuracy": float(np.mean(np.argmax(predictions, axis=1) == y_test)),
        "agreement": float(np.mean(np.argmax(predictions, axis=1) == victim_top1)),
        "queries_used": int(budget),
        "seconds": seconds,
    }


def main(argv=None):
    args = parse_args(argv)
    import keras

    import keras_dcp

    data_dir = os.path.abspath(args.data)
    x_test_u8, y_test = load_npz(os.path.join(data_dir, "cifar10", "test.npz"))
    x_test, y_test = to_float(x_test_u8[: args.test_size]), y_test[: args.test_size]
    q_u8, q_labels = load_npz(os.path.join(data_dir, "tinyimagenet", "queries.npz"))
    queries = to_float(q_u8)

    victim, victim_source = load_or_train_victim(args, data_dir)
    layer = keras_dcp.build_defense(args.defense)
    served = victim if layer is None else keras_dcp.protect(victim, layer)
    victim_accuracy = float(np.mean(np.argmax(victim.predict(x_test, batch_size=256, verbose=0), 1) == y_test))
    make_clone = make_clone_factory(args.clone, x_test.shape[1:], 10)

    results = {
        "command": "python " + shlex.join([os.path.relpath(__file__, REPO)] + (argv or sys.argv[1:])),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs",
        "backend": keras.backend.backend(),
        "victim": victim_source,
        "victim_accuracy": victim_accuracy,
        "defense": args.defense,
        "clone": args.clone,
        "epochs": args.epochs,
        "test_size": len(x_test),
        "rows": [],
    }
    print(f"victim test accuracy {victim_accuracy:.4f} on {len(x_test)} images; defense {args.defense}")

    def record(row):
        results["rows"].append(row)
        print(
            f"{row['implementation']:>6} {row['attack']:>12} budget {row['budget']:>9}: "
            f"clone acc {row['attacker_accuracy']:.4f} agreement {row['agreement']:.4f} "
            f"queries {row['queries_used']} time {row['seconds']:.1f}s",
            flush=True,
        )
        if args.out:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)

    budgets = [int(b) for b in args.budgets.split(",") if b]
    art_budgets = [int(b) for b in (args.art_budgets or args.budgets).split(",") if b]
    for name in [a for a in args.attacks.split(",") if a]:
        if name not in KNOCKOFF_ATTACKS:
            raise SystemExit(f"unknown attack {name!r}; choose from {KNOCKOFF_ATTACKS}")
        for budget in budgets:
            keras.utils.set_random_seed(args.seed)
            row = run_ours(name, make_clone, served, victim, queries, q_labels, budget, x_test, y_test, args)
            record(dict(row, implementation="ours", attack=name, budget=budget))
    for name in [a for a in args.zo_attacks.split(",") if a]:
        if name not in ZO_ATTACKS:
            raise SystemExit(f"unknown data-free attack {name!r}; choose from {ZO_ATTACKS}")
        for budget in (int(b) for b in args.zo_budgets.split(",") if b):
            keras.utils.set_random_seed(args.seed)
            row = run_ours(name, make_clone, served, victim, None, None, budget, x_test, y_test, args)
            record(dict(row, implementation="ours", attack=name, budget=budget))
    if args.art:
        if args.defense != "none":
            print("note: ART queries the undefended victim; the comparison is about implementation speed")
        for budget in art_budgets:
            same = args.defense == "none" and not args.augment
            if not (same and any(r["attack"] == "knockoff" and r["budget"] == budget for r in results["rows"])):
                keras.utils.set_random_seed(args.seed)
                row = run_ours(
                    "knockoff", make_clone, victim, victim, queries, q_labels, budget, x_test, y_test, args,
                    augment=False,
                )
                record(dict(row, implementation="ours", attack="knockoff", budget=budget))
            row = run_art(make_clone, victim, queries, budget, x_test, y_test, args)
            record(dict(row, implementation="art", attack="knockoff", budget=budget))
    return results


if __name__ == "__main__":
    main()
