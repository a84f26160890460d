"""Micro-benchmark of the defense layers alone: nanoseconds per row.

Not a test: timings depend on the machine. ``keras-dcp bench layer`` prints a
table and can write JSON. Rows are Dirichlet distributions, half of them
uncertain (perturbed by DCP) and half confident, ``K`` classes.
"""

from __future__ import annotations

import time

import numpy as np


def _rows(batch, classes, seed=0):
    rng = np.random.default_rng(seed)
    uncertain = rng.dirichlet(np.ones(classes), size=(batch + 1) // 2)
    confident = rng.dirichlet(np.ones(classes) * 0.02, size=batch // 2)
    return np.concatenate([uncertain, confident]).astype("float32")


def _time_per_call(fn, arg, min_seconds, blocks=5):
    """Best (lowest) mean seconds per call over ``blocks`` timed blocks.

    The minimum over blocks is the least disturbed by other work on the machine.
    """
    fn(arg)  # warm up (tracing, compilation, allocation)
    fn(arg)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds / blocks:
        fn(arg)
        calls += 1
    best = float("inf")
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(calls):
            fn(arg)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def layer_speed(batch_sizes=(1, 4096), classes=10, beta=0.7, gamma=0.2, min_seconds=1.0, with_art=True):
    """Time DCP and reverse sigmoid per row, compiled in-graph vs ART's numpy postprocessor.

    Returns a list of dicts: ``{"impl", "batch", "classes", "ns_per_row", "ns_per_call"}``.
    ``keras eager`` is the layer called eagerly; ``tf.function`` and ``tf.function+xla``
    are the layer inside a compiled graph, as a served SavedModel runs it.
    """
    import tensorflow as tf

    import keras_dcp

    dcp = keras_dcp.DeceptionLayer(beta=beta, gamma=gamma)
    rs = keras_dcp.ReverseSigmoid(beta=beta, gamma=gamma)
    impls = {
        # The fixed cost of calling any compiled graph from Python, for reference.
        "identity tf.function (call overhead)": tf.function(tf.identity),
        "DCP keras eager": dcp,
        "DCP tf.function": tf.function(dcp, reduce_retracing=True),
        "DCP tf.function+xla": tf.function(dcp, jit_compile=True, reduce_retracing=True),
        "ReverseSigmoid tf.function+xla": tf.function(rs, jit_compile=True, reduce_retracing=True),
    }
    if with_art:
        try:
            from art.defences.postprocessor import ReverseSigmoid as ArtReverseSigmoid
        except ImportError:
            with_art = False
        else:
            art_rs = ArtReverseSigmoid(beta=beta, gamma=gamma)
            impls["ART ReverseSigmoid (numpy)"] = lambda y: art_rs(y)
    results = []
    for batch in batch_sizes:
        y_np = _rows(batch, classes)
        y_tf = tf.constant(y_np)
        impls["DCP TFLite (ai_edge_litert, 1 thread)"] = _tflite_runner(dcp, batch, classes)
        for name, fn in impls.items():
            arg = y_np if name.startswith(("ART", "DCP TFLite")) else y_tf
            per_call = _time_per_call(fn, arg, min_seconds)
            results.append(
                {
                    "impl": name,
                    "batch": batch,
                    "classes": classes,
                    "ns_per_call": per_call * 1e9,
                    "ns_per_row": per_call * 1e9 / batch,
                }
            )
    return results


def _tflite_runner(layer, batch, classes):
    """``y -> layer(y)`` through a float TFLite model of the layer alone, fixed batch."""
    import keras
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    inputs = keras.Input((classes,), batch_size=batch)
    model = keras.Model(inputs, type(layer).from_config(layer.get_config())(inputs))
    interpreter = Interpreter(model_content=tf.lite.TFLiteConverter.from_keras_model(model).convert(), num_threads=1)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]

    def run(y):
        interpreter.set_tensor(source, y)
        interpreter.invoke()
        return interpreter.get_tensor(target)

    return run


def format_table(results):
    lines = [f"{'implementation':38s} {'batch':>6s} {'K':>4s} {'ns/row':>12s} {'us/call':>10s}"]
    for r in results:
        lines.append(
            f"{r['impl']:38s} {r['batch']:6d} {r['classes']:4d} {r['ns_per_row']:12.1f} {r['ns_per_call'] / 1e3:10.1f}"
        )
    return "\n".join(lines)
