#!/usr/bin/env python3
"""Bare vs protected latency on an Android device with TFLite's or LiteRT's benchmark tool.

Pushes both models (and, with ``--benchmark-binary``, the tool) over adb, runs
the tool for each setting, bare and protected alternately for ``--repeats``
rounds, and writes one JSON file:
``{"tool", "settings": {name: {"bare_us", "protected_us", "ratio", "bare_runs_us", ...}}}``
(medians of the tool's "Inference (avg)" over the rounds). Two tools:

* ``--tool tflite`` (default): the legacy Interpreter ``benchmark_model``;
  settings CPU 1 and 4 threads without XNNPACK, XNNPACK 1 and 4 threads, GPU
  delegate, NNAPI delegate;
* ``--tool litert``: LiteRT's CompiledModel benchmark (``benchmark_litert_model``;
  its prebuilt Android binary is also named ``benchmark_model``), the C++ twin
  of ``ai_edge_litert.tools.benchmark_litert_model`` that ``keras-dcp bench model``
  uses on the desktop; settings CPU 1 and 4 threads, GPU and NPU accelerators.

Standard library only; see docs/tflite.md for the full procedure.

    python tflite/android/benchmark_android.py --bare bare.tflite --protected protected.tflite \
        --benchmark-binary ~/Downloads/android_aarch64_benchmark_model -o android.json
    python tflite/android/benchmark_android.py --tool litert --bare bare.tflite --protected protected.tflite \
        --benchmark-binary ~/Downloads/android_arm64/benchmark_model -o android_litert.json
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

#: setting -> benchmark_model flags.
SETTINGS = {
    "cpu_1thread": ["--num_threads=1", "--use_xnnpack=false"],
    "cpu_4threads": ["--num_threads=4", "--use_xnnpack=false"],
    "xnnpack_1thread": ["--num_threads=1", "--use_xnnpack=true"],
    "xnnpack_4threads": ["--num_threads=4", "--use_xnnpack=true"],
    "gpu": ["--use_gpu=true"],
    "nnapi": ["--use_nnapi=true"],
}
#: setting -> flags of LiteRT's CompiledModel benchmark tool (check ``--help`` of your build).
LITERT_SETTINGS = {
    "cpu_1thread": ["--num_threads=1"],
    "cpu_4threads": ["--num_threads=4"],
    "gpu": ["--use_gpu=true"],
    "npu": ["--use_npu=true"],
}
#: --tool -> (settings, default binary name on the device).
TOOLS = {"tflite": (SETTINGS, "benchmark_model"), "litert": (LITERT_SETTINGS, "benchmark_litert_model")}
_AVERAGE = re.compile(r"Inference \(avg\):\s*([0-9.eE+]+)\s*(ms|us)?")
_AVG_LINE = re.compile(r"count=\d+.*?\bavg=([0-9.eE+]+)")


def parse_average_us(output):
    """Average inference time in microseconds from a benchmark tool's output.

    Reads ``Inference timings in us: ... Inference (avg): 1234.5`` (current
    tool; ``Inference (avg): 1.23 ms``, LiteRT's Python mirror, is read in
    ms) or, failing that, the last ``count=N ... avg=X`` line (older tools).
    Raises ValueError if neither is there.
    """
    match = _AVERAGE.search(output)
    if match:
        return float(match.group(1)) * (1000.0 if match.group(2) == "ms" else 1.0)
    lines = _AVG_LINE.findall(output)
    if lines:
        return float(lines[-1])
    raise ValueError("no inference time found in benchmark_model output:\n" + output[-2000:])


class Adb:
    """Thin wrapper over the ``adb`` executable (``-s SERIAL`` when given)."""

    def __init__(self, executable="adb", serial=None, dry_run=False):
        self.base = [executable] + (["-s", serial] if serial else [])
        self.dry_run = dry_run
        self.log = []

    def __call__(self, *args, check=True):
        command = self.base + [str(a) for a in args]
        self.log.append(command)
        if self.dry_run:
            print("$", shlex.join(command))
            return ""
        result = subprocess.run(command, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"{shlex.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result.stdout + result.stderr


def run(args):
    adb = Adb(args.adb, args.serial, args.dry_run)
    device_dir = args.device_dir.rstrip("/")
    adb("shell", "mkdir", "-p", device_dir)
    remote = {}
    for name, path in (("bare", args.bare), ("protected", args.protected)):
        if not os.path.exists(path):
            raise FileNotFoundError(path)
        remote[name] = f"{device_dir}/{name}.tflite"
        adb("push", path, remote[name])
    known, binary = TOOLS[args.tool]
    tool = args.device_binary or f"/data/local/tmp/{binary}"
    if args.benchmark_binary:
        tool = f"{device_dir}/{binary}"
        adb("push", args.benchmark_binary, tool)
        adb("shell", "chmod", "755", tool)
    settings = [s.strip() for s in (args.settings or ",".join(known)).split(",") if s.strip()]
    unknown = [s for s in settings if s not in known]
    if unknown:
        raise ValueError(f"unknown settings {unknown} for --tool {args.tool}; choose from {', '.join(known)}")
    results = {
        "tool": args.tool,
        "device": adb("shell", "getprop", "ro.product.model", check=False).strip() if not args.dry_run else "",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "num_runs": args.num_runs, "repeats": args.repeats, "settings": {},
    }
    for setting in settings:
        runs = {"bare": [], "protected": []}
        errors = {}
        for _ in range(args.repeats):
            for name in ("bare", "protected"):  # interleaved: drifts hit both
                command = ["shell", tool, f"--graph={remote[name]}", f"--num_runs={args.num_runs}",
                           f"--warmup_runs={args.warmup_runs}", *known[setting]]
                output = adb(*command, check=False)
                if args.dry_run:
                    continue
                try:
                    runs[name].append(parse_average_us(output))
                except ValueError as error:
                    errors[name] = str(error).splitlines()[0]
        row = {"flags": known[setting], "bare_runs_us": runs["bare"], "protected_runs_us": runs["protected"]}
        if runs["bare"] and runs["protected"]:
            row["bare_us"] = statistics.median(runs["bare"])
            row["protected_us"] = statistics.median(runs["protected"])
            row["ratio"] = row["protected_us"] / row["bare_us"]
        if errors:
            row["errors"] = errors  # e.g. a delegate the device lacks
        results["settings"][setting] = row
        if "ratio" in row:
            print(f"{setting:18s} bare {row['bare_us']:10.1f} us  protected {row['protected_us']:10.1f} us  "
                  f"ratio {row['ratio']:.4f}", flush=True)
        else:
            print(f"{setting:18s} failed: {errors}", flush=True)
    if args.output and not args.dry_run:
        with open(args.output, "w") as handle:
            json.dump(results, handle, indent=1)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bare", required=True, help="the victim alone, .tflite")
    parser.add_argument("--protected", required=True, help="the protected victim, .tflite")
    parser.add_argument("-o", "--output", default="android_benchmark.json")
    parser.add_argument("--adb", default="adb", help="adb executable (default: adb on PATH)")
    parser.add_argument("--serial", help="device serial (adb -s)")
    parser.add_argument("--tool", choices=sorted(TOOLS), default="tflite",
                        help="tflite: the Interpreter benchmark_model (default); litert: LiteRT's CompiledModel "
                        "benchmark (benchmark_litert_model)")
    parser.add_argument("--benchmark-binary", help="local tool binary to push (else --device-binary must exist)")
    parser.add_argument("--device-binary",
                        help="the tool on the device (default /data/local/tmp/benchmark_model, or "
                        "/data/local/tmp/benchmark_litert_model with --tool litert)")
    parser.add_argument("--device-dir", default="/data/local/tmp/keras_dcp")
    parser.add_argument("--settings", help="comma-separated (default all of the tool's): tflite: "
                        + ", ".join(SETTINGS) + "; litert: " + ", ".join(LITERT_SETTINGS))
    parser.add_argument("--num-runs", type=int, default=100)
    parser.add_argument("--warmup-runs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved bare/protected rounds per setting")
    parser.add_argument("--dry-run", action="store_true", help="print the adb commands only")
    args = parser.parse_args(argv)
    try:
        run(args)
    except (RuntimeError, ValueError, FileNotFoundError) as error:
        print(f"benchmark_android: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
