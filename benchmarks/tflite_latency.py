"""Desktop latency of bare vs protected TFLite models (not a test).

Batch 1, ``ai_edge_litert`` interpreter, ``--threads`` threads (default 1),
XNNPACK on. For each export mode the bare victim and the DCP-protected victim
are timed in interleaved rounds (bare, protected, bare, ...; each round
``--invocations`` invokes after a warm-up), so drifts of the machine hit both
alike; the report gives the median per-invoke time over all rounds and the
ratio protected / bare.

    python benchmarks/tflite_latency.py --victim /work/cache/victims/resnet20_cifar10.keras --json out.json

``--models A.tflite B.tflite ...`` times the given files instead (same
interleaving; ratios against the first), e.g. two QAT exports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SETTINGS = {
    "float": dict(quantize="none"),
    "fp16": dict(quantize="fp16"),
    "dynamic": dict(quantize="dynamic"),
    "int8 int8-io": dict(quantize="int8"),
    "int8 float-io": dict(quantize="int8", io_type="float"),
}


def _versions():
    from importlib.metadata import version

    return {name: version(name) for name in ("ai-edge-litert", "tensorflow", "keras")}


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def interleaved(models, x, rounds, invocations, threads):
    """Median seconds per invoke of each model, timed in alternating rounds."""
    import numpy as np

    from keras_dcp.tflite.interpreter import invoke_seconds, make_interpreter, quantize_input

    interpreters = {}
    for name, content in models.items():
        interpreter = make_interpreter(content, num_threads=threads)
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], quantize_input(x, detail))
        invoke_seconds(interpreter, max(10, invocations // 5))  # warm-up
        interpreters[name] = interpreter
    samples = {name: [] for name in models}
    for _ in range(rounds):
        for name, interpreter in interpreters.items():
            samples[name].append(invoke_seconds(interpreter, invocations))
    return {name: float(np.median(np.concatenate(s))) for name, s in samples.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", help=".keras victim (exports made here); or give --models")
    parser.add_argument("--models", nargs="+", help=".tflite files to time against the first, instead of --victim")
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated subset of: " + ", ".join(SETTINGS))
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--invocations", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--beta", type=float, default=0.7)
    parser.add_argument("--gamma", type=float, default=0.2)
    parser.add_argument("--edgetpu", action="store_true", help="also time the all-int8 Edge TPU formulation")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if bool(args.victim) == bool(args.models):
        parser.error("give either --victim or --models")

    import keras
    import numpy as np

    import keras_dcp
    from keras_dcp.tflite import export_tflite, protect_for_edgetpu

    keras.utils.set_random_seed(0)
    train = np.load(os.path.join(args.data, "cifar10", "train.npz"))["x"]
    representative = train[np.random.default_rng(0).permutation(len(train))[:500]].astype("float32") / 255.0
    x = representative[:1]
    if args.models:
        return _time_files(args, x)
    victim = keras.saving.load_model(args.victim)
    protected = keras_dcp.protect(victim, keras_dcp.DeceptionLayer(beta=args.beta, gamma=args.gamma))
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    if args.edgetpu:
        settings.append("int8 edgetpu")
    results = {"victim": args.victim, **_run_info(args), "settings": {}}
    for setting in settings:
        if setting == "int8 edgetpu":
            kwargs = dict(quantize="int8", tail="int8")
            protected_model = protect_for_edgetpu(victim, keras_dcp.DeceptionLayer(beta=args.beta, gamma=args.gamma))
        else:
            kwargs = SETTINGS[setting]
            protected_model = protected
        bare_kwargs = dict(kwargs, tail="int8") if kwargs["quantize"] == "int8" else kwargs
        models = {
            "bare": export_tflite(victim, None, representative=representative, **bare_kwargs),
            "protected": export_tflite(protected_model, None, representative=representative, **kwargs),
        }
        times = interleaved(models, x, args.rounds, args.invocations, args.threads)
        row = {"bare_us": times["bare"] * 1e6, "protected_us": times["protected"] * 1e6,
               "ratio": times["protected"] / times["bare"]}
        results["settings"][setting] = row
        print(f"{setting:16s} bare {row['bare_us']:8.1f} us  protected {row['protected_us']:8.1f} us  "
              f"ratio {row['ratio']:.4f}", flush=True)
    _save(args, results)
    return 0


def _time_files(args, x):
    """Time ``args.models`` (paths) interleaved; print and save ratios against the first."""
    models = {}
    for path in args.models:
        with open(path, "rb") as handle:
            models[path] = handle.read()
    times = interleaved(models, x, args.rounds, args.invocations, args.threads)
    first = times[args.models[0]]
    results = {**_run_info(args), "models": {path: {"us": t * 1e6, "ratio": t / first} for path, t in times.items()}}
    for path, row in results["models"].items():
        print(f"{row['us']:8.1f} us  ratio {row['ratio']:.4f}  {path}", flush=True)
    _save(args, results)
    return 0


def _run_info(args):
    """What a latency number depends on: timing settings, machine, date, versions."""
    return {"threads": args.threads, "rounds": args.rounds, "invocations": args.invocations,
            "machine": f"{_cpu_name()}, {os.cpu_count()} cpus, {platform.platform()}",
            "date": time.strftime("%Y-%m-%d"), "versions": _versions()}


def _save(args, results):
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    sys.exit(main())
