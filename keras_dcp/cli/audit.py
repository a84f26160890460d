"""``keras-dcp audit MODEL.tflite``: ops, XNNPACK and Edge TPU coverage, I/O quantization."""

from __future__ import annotations

import sys


def add_parser(subparsers, command):
    parser = subparsers.add_parser(
        command,
        help="list a .tflite model's ops, where they run (XNNPACK, Edge TPU) and its I/O quantization",
        description="Read MODEL.tflite and report each operator, whether LiteRT's XNNPACK "
        "delegate takes it here, whether the Edge TPU compiler supports it, and the input/output "
        "types and quantization. Exit status 1 when a --require is not met.",
    )
    parser.add_argument("model", help="a .tflite file")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--require", choices=("edgetpu", "int8-io", "xnnpack"), action="append", default=[],
                        help="exit 1 unless every op maps to the Edge TPU / the I/O is int8 / "
                        "every op runs under XNNPACK (repeatable)")
    return parser


def failed_requirements(report, requirements):
    """Human-readable reasons why ``report`` misses ``requirements`` (empty: all met)."""
    reasons = []
    if "edgetpu" in requirements and not report["edgetpu_all"]:
        reasons.append("Edge TPU: unsupported ops " + ", ".join(report["edgetpu_unsupported"]))
    if "int8-io" in requirements:
        types = [t["dtype"] for t in report["inputs"] + report["outputs"]]
        if any(t != "int8" for t in types):
            reasons.append(f"int8-io: input/output types are {', '.join(types)}")
    if "xnnpack" in requirements:
        outside = sorted({op["op"] for op in report["ops"] if op["xnnpack"] is False})
        if not report["xnnpack_known"] or outside:
            reasons.append("XNNPACK: not delegated " + (", ".join(outside) or "(runtime unavailable)"))
    return reasons


def run(args):
    import json

    from keras_dcp.tflite.audit import audit_tflite, format_report

    report = audit_tflite(args.model)
    reasons = failed_requirements(report, args.require)
    if args.json:
        print(json.dumps(dict(report, model=args.model, requirements_failed=reasons), indent=1))
    else:
        print(format_report(report))
    for reason in reasons:
        print(f"keras-dcp audit: requirement not met: {reason}", file=sys.stderr)
    return 1 if reasons else 0
