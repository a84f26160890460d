"""``keras-dcp train-victim``: train a zoo model on a dataset and save it as .keras."""

from __future__ import annotations


def add_parser(subparsers, command):
    from keras_dcp.cli.common import add_common_data_arguments, add_overwrite_argument

    parser = subparsers.add_parser(
        command,
        help="train a victim classifier from the model zoo",
        description="Train ARCH on the training split of DATASET (SGD + Nesterov, weight decay 5e-4, cosine "
        "schedule, crop/flip augmentation, a checkpoint each epoch) and save it as a .keras file that "
        "outputs probabilities.",
    )
    parser.add_argument("--dataset", required=True,
                        help="a preset (digits, cifar10, cifar10-local, svhn, gtsrb, ...), a tfds name, .npz or folder")
    parser.add_argument("--arch", help="resnet20, resnet32, small_cnn or mobilenet_v2 (default: the preset's, "
                        "else resnet20)")
    parser.add_argument("-o", "--output", required=True, help="where to save the trained model (.keras)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--learning-rate", type=float, default=0.1, help="initial learning rate (default 0.1)")
    parser.add_argument("--train-split", default="train", help="split to train on (default train)")
    parser.add_argument("--test-split", default="test", help="split to report accuracy on (default test; "
                        "'none' to skip)")
    parser.add_argument("--no-augment", action="store_true", help="no random crops or flips")
    flips = parser.add_mutually_exclusive_group()
    flips.add_argument("--flip", dest="flip", action="store_const", const=True,
                       help="random horizontal flips (default for natural images)")
    flips.add_argument("--no-flip", dest="flip", action="store_const", const=False,
                       help="no flips (default for digits, SVHN and GTSRB presets)")
    parser.add_argument("--checkpoint-dir", help="save a checkpoint each epoch and resume from it")
    parser.add_argument("--max-train", type=int, help="train on a seeded random subset of this many images")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_common_data_arguments(parser)
    add_overwrite_argument(parser)
    return parser


def run(args):
    import keras

    from keras_dcp.cli.common import (
        apply_distribution,
        atomic_output,
        check_flags_at_least,
        check_labels,
        check_output_file,
        load_labeled,
    )
    from keras_dcp.models import get_model
    from keras_dcp.training import accuracy, train_classifier

    check_output_file(args.output, args.overwrite, suffix=".keras")
    check_flags_at_least(args, 1, "epochs", "batch-size", "max-train")
    x_train, y_train, preset = load_labeled(args.dataset, args.train_split, args.data_dir, args.download,
                                            limit=args.max_train, seed=args.seed)
    if y_train.min() < 0:
        raise ValueError(f"The {args.train_split!r} split of {args.dataset!r} has no labels.")
    arch = args.arch or (preset.arch if preset else "resnet20")
    num_classes = preset.num_classes if preset else int(y_train.max()) + 1
    check_labels(y_train, num_classes, f"The {args.train_split!r} split of {args.dataset!r}")
    flip = args.flip if args.flip is not None else (preset.flip if preset else True)
    strategy = apply_distribution(args.distribute)
    keras.utils.set_random_seed(args.seed)
    model = get_model(arch, x_train.shape[1:], num_classes)
    print(f"training {model.name} ({model.count_params():,} parameters) on {len(x_train)} images of "
          f"{args.dataset}, {num_classes} classes, {args.epochs} epochs")
    train_classifier(
        model, x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, augment=not args.no_augment, flip=flip,
        checkpoint_dir=args.checkpoint_dir, seed=args.seed, verbose=0 if args.quiet else 1, strategy=strategy,
    )
    train_accuracy = accuracy(model, x_train, y_train)
    print(f"train accuracy {train_accuracy:.4f}")
    if args.test_split and args.test_split.lower() != "none":
        x_test, y_test, _ = load_labeled(args.dataset, args.test_split, args.data_dir, args.download)
        if (y_test >= 0).all():
            check_labels(y_test, num_classes, f"The {args.test_split!r} split of {args.dataset!r}")
            print(f"test accuracy {accuracy(model, x_test, y_test):.4f} ({len(x_test)} images)")
    with atomic_output(args.output) as temporary:
        model.save(temporary)
    print(f"saved {args.output}")
    return 0
