#!/usr/bin/env python3
"""Compile bare and protected models for the Coral Edge TPU, report the op mapping, time them.

1. ``edgetpu_compiler -s -o OUT_DIR MODEL.tflite`` for each model; the
   compiler's per-op table ("Operator / Count / Status") is parsed into
   ``{op: {"edgetpu": n, "cpu": n, "reasons": [...]}}``;
2. unless ``--skip-timing``: both ``*_edgetpu.tflite`` files are timed with
   pycoral on the attached USB/PCIe Coral, alternately for ``--repeats``
   rounds of ``--runs`` invokes (batch 1);
3. everything goes to one JSON file (``--output``).

    python tflite/coral/benchmark_coral.py --bare bare_int8.tflite \
        --protected protected_edgetpu.tflite -o coral.json

Standard library only, plus pycoral for the timing step.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

_ROW = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s+(\d+)\s+(.+?)\s*$")
_COUNT = re.compile(r"Number of operations that will run on (Edge TPU|CPU):\s*(\d+)")


def parse_compiler_log(text):
    """The op mapping of an ``edgetpu_compiler -s`` log.

    Returns ``{"ops": {op: {"edgetpu": n, "cpu": n, "reasons": [..]}},
    "edgetpu_ops": n, "cpu_ops": n, "all_mapped": bool}``.
    """
    ops = {}
    counts = {"Edge TPU": None, "CPU": None}
    in_table = False
    for line in text.splitlines():
        found = _COUNT.search(line)
        if found:
            counts[found.group(1)] = int(found.group(2))
            continue
        if re.match(r"^\s*Operator\s+Count\s+Status", line):
            in_table = True
            continue
        if not in_table:
            continue
        match = _ROW.match(line)
        if not match:
            continue
        op, count, status = match.group(1), int(match.group(2)), match.group(3)
        entry = ops.setdefault(op, {"edgetpu": 0, "cpu": 0, "reasons": []})
        if status.startswith("Mapped to Edge TPU"):
            entry["edgetpu"] += count
        else:
            entry["cpu"] += count
            entry["reasons"].append(status)
    edgetpu = counts["Edge TPU"] if counts["Edge TPU"] is not None else sum(e["edgetpu"] for e in ops.values())
    cpu = counts["CPU"] if counts["CPU"] is not None else sum(e["cpu"] for e in ops.values())
    return {"ops": ops, "edgetpu_ops": edgetpu, "cpu_ops": cpu, "all_mapped": cpu == 0 and edgetpu > 0}


def compile_model(compiler, model, out_dir):
    """Run the compiler; returns ``(compiled_path, log_text, command)``."""
    command = [compiler, "-s", "-o", out_dir, model]
    result = subprocess.run(command, capture_output=True, text=True)
    log = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed ({result.returncode}):\n{log}")
    stem = os.path.splitext(os.path.basename(model))[0]
    return os.path.join(out_dir, f"{stem}_edgetpu.tflite"), log, command


def time_on_coral(models, runs, repeats, device=None):
    """Median milliseconds per invoke of each compiled model, interleaved rounds (pycoral)."""
    import numpy as np
    from pycoral.utils.edgetpu import make_interpreter

    interpreters = {}
    for name, path in models.items():
        interpreter = make_interpreter(path, device=device) if device else make_interpreter(path)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        interpreter.invoke()  # the first call loads the model onto the TPU
        interpreters[name] = interpreter
    samples = {name: [] for name in models}
    for _ in range(repeats):
        for name, interpreter in interpreters.items():
            for _ in range(runs):
                start = time.perf_counter()
                interpreter.invoke()
                samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def run(args):
    os.makedirs(args.out_dir, exist_ok=True)
    results = {"date": time.strftime("%Y-%m-%d %H:%M"), "models": {}}
    compiled = {}
    for name, path in (("bare", args.bare), ("protected", args.protected)):
        if not os.path.exists(path):
            raise FileNotFoundError(path)
        output, log, command = compile_model(args.compiler, path, args.out_dir)
        mapping = parse_compiler_log(log)
        results["models"][name] = {"source": path, "compiled": output, "command": command, **mapping}
        compiled[name] = output
        status = "all ops on the Edge TPU" if mapping["all_mapped"] else f"{mapping['cpu_ops']} ops on the CPU"
        print(f"{name:10s} {mapping['edgetpu_ops']} ops on the Edge TPU, {status}", flush=True)
        for op, entry in sorted(mapping["ops"].items()):
            if entry["cpu"]:
                print(f"    {op}: {entry['cpu']} on CPU ({'; '.join(sorted(set(entry['reasons'])))})")
    if not args.skip_timing:
        times = time_on_coral(compiled, args.runs, args.repeats, args.device)
        results["timing"] = {"bare_ms": times["bare"], "protected_ms": times["protected"],
                             "ratio": times["protected"] / times["bare"], "runs": args.runs, "repeats": args.repeats}
        print(f"timing     bare {times['bare']:.3f} ms  protected {times['protected']:.3f} ms  "
              f"ratio {results['timing']['ratio']:.4f}")
    with open(args.output, "w") as handle:
        json.dump(results, handle, indent=1)
    if args.require_all_mapped and not results["models"]["protected"]["all_mapped"]:
        print("benchmark_coral: the protected model does not map whole to the Edge TPU", file=sys.stderr)
        return results, 1
    return results, 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bare", required=True, help="the victim alone, full-int8 .tflite")
    parser.add_argument("--protected", required=True, help="the Edge TPU-protected victim (keras-dcp export --edgetpu)")
    parser.add_argument("-o", "--output", default="coral_benchmark.json")
    parser.add_argument("--out-dir", default="edgetpu_out", help="where the compiled models go")
    parser.add_argument("--compiler", default="edgetpu_compiler")
    parser.add_argument("--device", help="pycoral device string, e.g. usb:0 or pci:0")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-timing", action="store_true", help="compile and report the mapping only")
    parser.add_argument("--require-all-mapped", action="store_true", help="exit 1 unless every protected op maps")
    args = parser.parse_args(argv)
    try:
        _, status = run(args)
    except (RuntimeError, FileNotFoundError, ImportError) as error:
        print(f"benchmark_coral: error: {error}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
