"""``keras-dcp bench layer``: nanoseconds per row of the defense layers (not a test)."""

from __future__ import annotations


def add_parser(subparsers, command):
    parser = subparsers.add_parser(
        command,
        help="micro-benchmarks (timings belong here, never in tests)",
        description="Time the defense layers alone, beside ART's numpy ReverseSigmoid if installed.",
    )
    parser.add_argument("what", choices=["layer"], help="what to time")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4096], help="batch sizes (default 1 4096)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum timing per measurement")
    parser.add_argument("--no-art", action="store_true", help="skip ART even if installed")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    return parser


def run(args):
    import json
    import platform

    from keras_dcp.bench import format_table, layer_speed

    from keras_dcp.cli.common import check_output_file

    if any(b < 1 for b in args.batch) or args.classes < 2:
        raise ValueError("--batch values must be >= 1 and --classes >= 2.")
    if not args.seconds > 0:
        raise ValueError(f"--seconds must be > 0; got {args.seconds}.")
    if args.json:
        check_output_file(args.json, args.overwrite, flag="--json")
    results = layer_speed(args.batch, args.classes, min_seconds=args.seconds, with_art=not args.no_art)
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": platform.platform(), "processor": platform.processor(), "results": results}, f, indent=2)
    return 0
