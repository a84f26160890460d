"""``keras-dcp protect MODEL -o OUT``: add a defense to a saved Keras model."""

from __future__ import annotations

from keras_dcp.cli.common import add_overwrite_argument


def add_parser(subparsers, command):
    parser = subparsers.add_parser(
        command,
        help="append a defense (DCP by default) to a saved .keras model",
        description="Load MODEL (.keras), append a defense after its probabilities and save OUT "
        "(.keras, or a SavedModel directory if OUT has no .keras suffix).",
    )
    parser.add_argument("model", help="a .keras model file")
    parser.add_argument("-o", "--output", required=True, help="where to save the protected model")
    parser.add_argument("--defense", default="dcp",
                        help="defense spec, e.g. dcp, rs:beta=1,gamma=0.2, mad:eps=0.5[,preserve_top1=true]"
                        "[,surrogate=S.keras], am:tau=0.5,model=F.keras (default dcp)")
    parser.add_argument("--beta", type=float, help="noise amplitude (DCP and rs)")
    parser.add_argument("--gamma", type=float, help="noise sharpness (DCP and rs)")
    parser.add_argument("--tau", type=float, help="DCP detector threshold in (0, 1]; default: beta")
    parser.add_argument("--nu", type=float, help="DCP detector slope (default 1000)")
    parser.add_argument("--l1-budget", type=float, help="cap on the l1 move of each row")
    parser.add_argument("--preserve-top1", action="store_true", help="keep every row's argmax")
    logits = parser.add_mutually_exclusive_group()
    logits.add_argument("--from-logits", dest="from_logits", action="store_const", const=True,
                        help="the model outputs logits (a softmax is inserted)")
    logits.add_argument("--from-probabilities", dest="from_logits", action="store_const", const=False,
                        help="the model already outputs probabilities")
    add_overwrite_argument(parser)
    return parser


#: Flags that override a parameter of the ``--defense`` spec.
OVERRIDE_FLAGS = ("beta", "gamma", "tau", "nu", "l1_budget")


def defense_from_args(args):
    """The layer of ``--defense`` with the flag overrides (``--beta``...) applied, through the registry."""
    from keras_dcp.defenses.registry import build_defense, parse_spec

    name, params = parse_spec(args.defense)
    for key in OVERRIDE_FLAGS:
        value = getattr(args, key, None)
        if value is not None:
            params[key] = value
    if getattr(args, "preserve_top1", False):
        params["preserve_top1"] = True
    return build_defense(name, **params)


def run(args):
    from keras_dcp.cli.common import atomic_output, check_output_dir, check_output_file
    from keras_dcp.model_io import load_keras_model
    from keras_dcp.protect import protect

    as_keras = args.output.endswith(".keras")
    if as_keras:
        check_output_file(args.output, args.overwrite)
    else:
        check_output_dir(args.output, args.overwrite)
    defense = defense_from_args(args)
    if defense is None:
        from keras_dcp.defenses.registry import defense_names

        raise ValueError(f"--defense none protects nothing; choose from {', '.join(defense_names()[1:])}.")
    model = load_keras_model(args.model)
    protected = protect(model, defense, from_logits=args.from_logits)
    with atomic_output(args.output, directory=not as_keras) as temporary:
        if as_keras:
            protected.save(temporary)
        else:
            protected.export(temporary, verbose=False)
    print(f"saved {type(defense).__name__}-protected model to {args.output}")
    return 0
