"""``keras-dcp protect MODEL -o OUT``: add a defense to a saved Keras model."""

from __future__ import annotations


def add_parser(subparsers, command):
    parser = subparsers.add_parser(
        command,
        help="append a defense (DCP by default) to a saved .keras model",
        description="Load MODEL (.keras), append a defense after its probabilities and save OUT "
        "(.keras, or a SavedModel directory if OUT has no .keras suffix).",
    )
    parser.add_argument("model", help="a .keras model file")
    parser.add_argument("-o", "--output", required=True, help="where to save the protected model")
    parser.add_argument("--defense", default="dcp", help="defense spec, e.g. dcp, rs:beta=1,gamma=0.2 (default dcp)")
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
    return parser


def defense_from_args(args):
    """The defense spec of ``--defense`` with the flag overrides folded in."""
    from keras_dcp.defenses.spec import build_defense, parse_spec

    name, params = parse_spec(args.defense)
    for key in ("beta", "gamma", "tau", "nu", "l1_budget"):
        value = getattr(args, key, None)
        if value is not None:
            params[key] = value
    if getattr(args, "preserve_top1", False):
        params["preserve_top1"] = True
    spec = name + (":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")
    return build_defense(spec)


def run(args):
    import keras

    from keras_dcp.protect import protect

    defense = defense_from_args(args)
    if defense is None:
        raise ValueError("--defense none protects nothing; choose dcp, rs, rounding, toplabel or topk.")
    model = keras.saving.load_model(args.model, safe_mode=True)
    protected = protect(model, defense, from_logits=args.from_logits)
    if args.output.endswith(".keras"):
        protected.save(args.output)
    else:
        protected.export(args.output)
    print(f"saved {type(defense).__name__}-protected model to {args.output}")
    return 0
