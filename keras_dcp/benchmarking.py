"""Whole-model latency of each defense, interleaved: what ``keras-dcp bench model`` runs.

For every defense spec the victim is protected (:func:`keras_dcp.protect`) and
timed as a whole, per call of a batch, in each runtime:

* ``keras``: the protected Keras model, ``model(x, training=False)`` traced
  once in a ``tf.function`` (what a SavedModel serves; other backends:
  ``predict_on_batch``), TensorFlow's default thread pool;
* ``tflite``: the float ``.tflite`` export with a fixed batch
  (:func:`keras_dcp.export_tflite` with ``batch_size``), run by LiteRT's
  ``CompiledModel`` API on the CPU accelerator with ``threads`` threads (the
  runtime of LiteRT's ``benchmark_litert_model``). LiteRT's own tool
  (:mod:`ai_edge_litert.tools.benchmark_litert_model`) also runs once per
  model file, as a cross-check (``litert_tool`` in the results; it is not
  interleaved, so the ratios come from our own rounds).

Timing is interleaved: for each runtime and batch, ``rounds`` rounds each
time every defense for ``runs`` calls (after ``warmup`` untimed calls), in
an order rotated by one every round, so machine drift hits all defenses
alike and none is always first. A defense's latency is the median of its
round medians; its ratio to ``none`` (and to the first ``dcp`` spec) is the
median over rounds of the ratio of the two round medians measured in the
same round. No number here is a test: timings depend on the machine.

The JSON (:func:`validate_bench`)::

    {"schema": "keras-dcp/bench-model/1", "date": str, "machine": {...},
     "model": str, "input_shape": [...], "num_classes": int,
     "settings": {"rounds", "runs", "warmup", "threads", "seed", "runtimes", "batches", "defenses"},
     "models": [{"spec", "defense", "params", "parameters", "extra_parameters",
                 "tflite_bytes" (int, at the first batch, or null), "tflite_exportable", "note"?}, ...],
     "order": [{"runtime", "batch", "rounds": [[spec, ...], ...]}, ...],
     "results": [{"spec", "runtime", "batch", "status": "ok" | "error",
                  "median_ms", "ms_per_query", "p25_ms", "p75_ms", "min_ms", "max_ms",
                  "round_medians_ms": [...], "ratio_to_none", "ratio_to_dcp",
                  "litert_tool"?: {"median_ms", "p95_ms", "avg_ms"}, "error"?: str}, ...]}

``ratio_to_none``/``ratio_to_dcp`` are null when that spec was not timed.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import statistics
import tempfile
import time
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from keras_dcp.validation import check_int

SCHEMA = "keras-dcp/bench-model/1"
RUNTIMES = ("keras", "tflite")
RESULT_FIELDS = ("spec", "runtime", "batch", "status")
TIMING_FIELDS = ("median_ms", "ms_per_query", "p25_ms", "p75_ms", "min_ms", "max_ms", "round_medians_ms")


def interleaved_order(specs: Sequence[str], rounds: int) -> list[list[str]]:
    """The order of each round: ``specs`` rotated by one per round.

    >>> interleaved_order(["none", "dcp", "mad"], 4)
    [['none', 'dcp', 'mad'], ['dcp', 'mad', 'none'], ['mad', 'none', 'dcp'], ['none', 'dcp', 'mad']]
    """
    specs = list(specs)
    return [specs[r % len(specs):] + specs[:r % len(specs)] for r in range(rounds)]


def _quantile(values, q):
    return float(np.quantile(np.asarray(values, "float64"), q))


def summarize(round_seconds: Sequence[Sequence[float]], batch: int) -> dict[str, Any]:
    """Median and spread of per-call times, from each round's calls (seconds) -> milliseconds."""
    medians = [statistics.median(calls) * 1e3 for calls in round_seconds]
    median = statistics.median(medians)
    return {
        "median_ms": median,
        "ms_per_query": median / batch,
        "p25_ms": _quantile(medians, 0.25),
        "p75_ms": _quantile(medians, 0.75),
        "min_ms": min(medians),
        "max_ms": max(medians),
        "round_medians_ms": medians,
    }


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over rounds of ``numerator[r] / denominator[r]`` (both measured in round ``r``)."""
    return float(statistics.median(a / b for a, b in zip(numerator, denominator)))


def keras_runner(model: Any, x: np.ndarray) -> Callable[[], Any]:
    """A zero-argument call of ``model`` on ``x``: traced once in a ``tf.function`` under TensorFlow."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tensor = tf.constant(x)
        function = tf.function(lambda batch: model(batch, training=False))
        return lambda: function(tensor).numpy()
    return lambda: model.predict_on_batch(x)


def tflite_runner(content: bytes, x: np.ndarray, threads: int = 1) -> Callable[[], None]:
    """A zero-argument call of a float ``.tflite`` model with a fixed batch on ``x`` (LiteRT CompiledModel, CPU)."""
    try:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.environment import Environment, EnvironmentOptions
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import CpuOptions, Options
    except ImportError:  # ai-edge-litert 1.x has the Interpreter only
        raise ValueError("The tflite runtime of bench model needs ai-edge-litert >= 2.0 (its CompiledModel API); "
                         "pip install -U ai-edge-litert.") from None

    environment = Environment.create(options=EnvironmentOptions())
    options = Options(hardware_accelerators=HardwareAccelerator(HardwareAccelerator.CPU),
                      cpu_options=CpuOptions(num_threads=threads))
    model = CompiledModel.from_buffer(content, environment=environment, options=options)
    inputs, outputs = model.create_input_buffers(0), model.create_output_buffers(0)
    inputs[0].write(np.ascontiguousarray(x, "float32"))

    def run():
        model.run_by_index(0, inputs, outputs)

    run.keep_alive = (environment, model, inputs, outputs)  # the buffers live as long as the runner
    return run


def litert_tool(path: str, threads: int = 1, runs: int = 50, warmup: int = 5) -> dict[str, float]:
    """LiteRT's ``benchmark_litert_model`` on a ``.tflite`` file (CPU): its median, p95 and mean in ms."""
    import argparse

    try:
        from ai_edge_litert.tools import benchmark_litert_model as tool
    except ImportError:
        raise ValueError("LiteRT's benchmark tool needs ai-edge-litert >= 2.0; or pass --no-litert-tool.") from None

    args = argparse.Namespace(
        model=path, signature="", use_cpu=True, no_cpu=False, use_gpu=False, use_npu=False,
        require_full_delegation=False, dispatch_library_path="", compiler_plugin_path="", runtime_path="",
        num_runs=runs, warmup_runs=warmup, num_threads=threads, result_json="", verbose=False,
    )
    with contextlib.redirect_stdout(io.StringIO()):
        latency = tool.run_benchmark(args)["latency"]
    return {"median_ms": latency["median_ms"], "p95_ms": latency["p95_ms"], "avg_ms": latency["avg_ms"]}


def _time_calls(run, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def prepare_models(victim: Any, specs: Sequence[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(rows for "models", {spec: served keras model})``: the victim protected by each spec."""
    from keras_dcp.defenses.registry import build_defense, describe
    from keras_dcp.protect import protect

    base = int(victim.count_params())
    rows, served = [], {}
    for spec in specs:
        layer = build_defense(spec)
        name, params = describe(layer)
        row = {"spec": spec, "defense": name, "params": params}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = victim if layer is None else protect(victim, layer)
        notes = [str(w.message).split(":")[0] for w in caught if issubclass(w.category, UserWarning)]
        if notes:
            row["note"] = "; ".join(notes)
        row["parameters"] = int(model.count_params())
        row["extra_parameters"] = row["parameters"] - base
        row["tflite_exportable"] = layer is None or bool(layer.tflite_exportable)
        row["tflite_bytes"] = None
        rows.append(row)
        served[spec] = model
    return rows, served


def bench_model(
    victim: Any,
    defenses: Sequence[str] = ("none", "dcp"),
    runtimes: Sequence[str] = ("keras",),
    batches: Sequence[int] = (1,),
    rounds: int = 5,
    runs: int = 10,
    warmup: int = 3,
    threads: int = 1,
    seed: int = 0,
    use_litert_tool: bool = True,
    model_name: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Time the whole protected model per defense spec, runtime and batch; return the results dict.

    Args:
        victim: the undefended ``keras.Model`` (probabilities out).
        defenses: defense specs (``"none"``, ``"dcp"``, ``"mad:eps=0.5"``...); ``none``
            and the first ``dcp`` spec are the references of the ratios.
        runtimes: ``"keras"`` and/or ``"tflite"``.
        batches: batch sizes, each ``>= 1``.
        rounds, runs, warmup: interleaved rounds, timed calls per round and
            defense, untimed calls before (see the module docstring).
        threads: TFLite CPU threads (Keras uses TensorFlow's default pool).
        seed: seeds the random input images (uniform in ``[0, 1]``).
        use_litert_tool: also run LiteRT's benchmark tool once per ``.tflite`` file.
        model_name: what ``results["model"]`` says (default the victim's name).
        progress: a progress bar over the timed (runtime, batch) groups.

    Returns:
        The results dict (module docstring), validated.
    """
    specs = list(dict.fromkeys(s.strip() for s in defenses))
    if not specs:
        raise ValueError("Give at least one --defense spec (none, dcp, mad:eps=0.5...).")
    runtimes = list(dict.fromkeys(runtimes))
    for runtime in runtimes:
        if runtime not in RUNTIMES:
            raise ValueError(f"Unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}.")
    batches = [check_int("batch", b, minimum=1) for b in batches]
    rounds = check_int("rounds", rounds, minimum=1)
    runs = check_int("runs", runs, minimum=1)
    warmup = check_int("warmup", warmup, minimum=0)
    threads = check_int("threads", threads, minimum=1)
    model_rows, served = prepare_models(victim, specs)
    input_shape = tuple(victim.input_shape[1:])
    dcp_spec = next((row["spec"] for row in model_rows if row["defense"] == "dcp"), None)

    tflite_files = {}
    with tempfile.TemporaryDirectory(prefix="keras_dcp_bench_") as directory:
        if "tflite" in runtimes:
            from keras_dcp.tflite.export import export_tflite

            for row in model_rows:
                for batch in batches if row["tflite_exportable"] else ():
                    path = os.path.join(directory, f"model_{len(tflite_files)}.tflite")
                    size = len(export_tflite(served[row["spec"]], path, batch_size=batch))
                    row["tflite_bytes"] = row["tflite_bytes"] or size  # at the first batch
                    tflite_files[row["spec"], batch] = path
        groups = [(runtime, batch) for runtime in runtimes for batch in batches]
        bar = _progress(len(groups), progress)
        results, order = [], []
        rng = np.random.default_rng(seed)
        for runtime, batch in groups:
            if bar is not None:
                bar.set_description(f"{runtime} batch {batch}")
            x = rng.uniform(0.0, 1.0, size=(batch, *input_shape)).astype("float32")
            runners, errors = {}, {}
            for spec in specs:
                try:
                    if runtime == "keras":
                        runners[spec] = keras_runner(served[spec], x)
                    elif (spec, batch) in tflite_files:
                        with open(tflite_files[spec, batch], "rb") as handle:
                            runners[spec] = tflite_runner(handle.read(), x, threads)
                    else:
                        errors[spec] = "not exportable to TFLite (per-query autodiff)"
                    if spec in runners:
                        for _ in range(warmup):
                            runners[spec]()
                except Exception as error:  # a runtime that cannot run this model: reported, not fatal
                    runners.pop(spec, None)
                    errors[spec] = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
            timed = [spec for spec in specs if spec in runners]
            schedule = interleaved_order(timed, rounds) if timed else []
            order.append({"runtime": runtime, "batch": batch, "rounds": schedule})
            calls = {spec: [] for spec in timed}
            for round_specs in schedule:
                for spec in round_specs:
                    calls[spec].append(_time_calls(runners[spec], runs))
            summaries = {spec: summarize(calls[spec], batch) for spec in timed}
            for spec in specs:
                row = {"spec": spec, "runtime": runtime, "batch": batch}
                if spec in errors:
                    row.update(status="error", error=errors[spec])
                    results.append(row)
                    continue
                row.update(status="ok", **summaries[spec])
                medians = summaries[spec]["round_medians_ms"]
                for key, reference in (("ratio_to_none", "none"), ("ratio_to_dcp", dcp_spec)):
                    ok = reference in summaries
                    row[key] = paired_ratio(medians, summaries[reference]["round_medians_ms"]) if ok else None
                if runtime == "tflite" and use_litert_tool:
                    row["litert_tool"] = litert_tool(tflite_files[spec, batch], threads, runs=max(30, runs),
                                                     warmup=warmup)
                results.append(row)
            runners.clear()
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    import keras

    return validate_bench({
        "schema": SCHEMA,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "backend": keras.backend.backend()},
        "model": model_name or victim.name,
        "input_shape": list(input_shape),
        "num_classes": int(victim.output_shape[-1]),
        "settings": {"rounds": rounds, "runs": runs, "warmup": warmup, "threads": threads, "seed": seed,
                     "runtimes": runtimes, "batches": batches, "defenses": specs},
        "models": model_rows,
        "order": order,
        "results": results,
    })


def validate_bench(results: dict[str, Any]) -> dict[str, Any]:
    """Check a ``bench model`` results dict against the schema; return it (ValueError naming the field)."""
    if not isinstance(results, dict) or results.get("schema") != SCHEMA:
        raise ValueError(f"Not a {SCHEMA} results dict.")
    for key in ("date", "machine", "model", "settings", "models", "order", "results"):
        if key not in results:
            raise ValueError(f"bench results lack {key!r}.")
    specs = {row["spec"] for row in results["models"]}
    for index, row in enumerate(results["models"]):
        for key in ("spec", "defense", "params", "parameters", "extra_parameters", "tflite_bytes",
                    "tflite_exportable"):
            if key not in row:
                raise ValueError(f"models[{index}] lacks {key!r}.")
    for index, row in enumerate(results["results"]):
        where = f"results[{index}]"
        for key in RESULT_FIELDS:
            if key not in row:
                raise ValueError(f"{where} lacks {key!r}.")
        if row["spec"] not in specs or row["runtime"] not in RUNTIMES:
            raise ValueError(f"{where}: unknown spec {row['spec']!r} or runtime {row['runtime']!r}.")
        if row["status"] == "ok":
            for key in TIMING_FIELDS + ("ratio_to_none", "ratio_to_dcp"):
                if key not in row:
                    raise ValueError(f"{where} lacks {key!r}.")
            if not row["median_ms"] > 0 or not row["min_ms"] <= row["median_ms"] <= row["max_ms"]:
                raise ValueError(f"{where}: inconsistent timings {row['min_ms']}, {row['median_ms']}, {row['max_ms']}.")
        elif row["status"] == "error":
            if not row.get("error"):
                raise ValueError(f"{where}: an error row needs an 'error' message.")
        else:
            raise ValueError(f"{where}: status must be 'ok' or 'error'; got {row['status']!r}.")
    return results


def format_bench_table(results: dict[str, Any]) -> str:
    """The results as a plain-text table: one line per (runtime, batch, defense)."""
    models = {row["spec"]: row for row in results["models"]}
    header = f"{'runtime':7s} {'batch':>5s} {'defense':28s} {'median ms':>10s} {'p25-p75 ms':>17s} " \
             f"{'ms/query':>9s} {'x none':>7s} {'x dcp':>7s} {'extra params':>12s} {'tflite KiB':>10s}"
    lines = [f"{results['model']} {tuple(results['input_shape'])}, {results['machine']['platform']}", header]

    def ratio(value):
        return "-" if value is None else f"{value:.3f}"

    for row in results["results"]:
        model = models[row["spec"]]
        size = "-" if model["tflite_bytes"] is None else f"{model['tflite_bytes'] / 1024:.0f}"
        prefix = f"{row['runtime']:7s} {row['batch']:5d} {row['spec'][:28]:28s}"
        if row["status"] != "ok":
            lines.append(f"{prefix} {'error: ' + row['error'][:80]}")
            continue
        spread = f"{row['p25_ms']:.3f}-{row['p75_ms']:.3f}"
        lines.append(f"{prefix} {row['median_ms']:10.3f} {spread:>17s} {row['ms_per_query']:9.4f} "
                     f"{ratio(row['ratio_to_none']):>7s} {ratio(row['ratio_to_dcp']):>7s} "
                     f"{model['extra_parameters']:12d} {size:>10s}")
    return "\n".join(lines)


def _progress(total, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="group", desc="bench", leave=False)


__all__ = [
    "RUNTIMES",
    "SCHEMA",
    "bench_model",
    "format_bench_table",
    "interleaved_order",
    "keras_runner",
    "litert_tool",
    "paired_ratio",
    "prepare_models",
    "summarize",
    "tflite_runner",
    "validate_bench",
]
