"""Run ``.tflite`` models with ``ai_edge_litert`` (the LiteRT interpreter)."""

from __future__ import annotations

from typing import Any

import time

import numpy as np


def make_interpreter(model: Any, num_threads: int = 1, xnnpack: bool = True):
    """An allocated ``ai_edge_litert.interpreter.Interpreter`` for a path or bytes.

    Args:
        model: path to a ``.tflite`` file, or its bytes.
        num_threads: CPU threads (1 for the latency numbers in docs).
        xnnpack: apply the default XNNPACK delegate (LiteRT's default).
    """
    from ai_edge_litert import interpreter as litert

    from keras_dcp.tflite.flatbuffer import model_bytes

    kwargs = {"model_content": model_bytes(model), "num_threads": int(num_threads)}
    if not xnnpack:
        kwargs["experimental_op_resolver_type"] = litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = litert.Interpreter(**kwargs)
    interpreter.allocate_tensors()
    return interpreter


def quantize_input(x, detail):
    """Float model inputs -> the input tensor's dtype (``q = round(x / s) + z``, clipped)."""
    x = np.asarray(x)
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x.astype("float32") / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize_output(q, detail):
    """Output tensor -> float32 (``x = s (q - z)``; float outputs pass through)."""
    q = np.asarray(q)
    if np.dtype(detail["dtype"]).kind == "f":
        return q.astype("float32")
    scale, zero_point = detail["quantization"]
    return (q.astype("float32") - zero_point) * scale


def predict(model: Any, x: np.ndarray, batch_size: int = 256, num_threads: int = 1, interpreter: Any = None) -> np.ndarray:
    """Float outputs of a single-input, single-output ``.tflite`` model on ``x``.

    Quantized inputs and outputs are handled from the tensors' scale and zero
    point, so ``x`` is always what the float model takes (e.g. images in
    ``[0, 1]``). Shapes: ``(n, ...) -> (n, K)``.
    """
    interpreter = interpreter or make_interpreter(model, num_threads)
    x = np.asarray(x)
    input_index = interpreter.get_input_details()[0]["index"]
    expected = tuple(int(d) for d in interpreter.get_input_details()[0]["shape_signature"][1:])
    if x.ndim != len(expected) + 1 or any(e not in (-1, d) for e, d in zip(expected, x.shape[1:])):
        raise ValueError(f"The TFLite model takes inputs of shape (n, {', '.join(map(str, expected))}); got {x.shape}.")
    if len(x) == 0:
        raise ValueError("predict() needs at least one input row.")
    outputs = []
    current = None
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size]
        if current != len(batch):
            interpreter.resize_tensor_input(input_index, (len(batch),) + tuple(x.shape[1:]))
            interpreter.allocate_tensors()
            current = len(batch)
        input_detail = interpreter.get_input_details()[0]
        output_detail = interpreter.get_output_details()[0]
        interpreter.set_tensor(input_detail["index"], quantize_input(batch, input_detail))
        interpreter.invoke()
        outputs.append(dequantize_output(interpreter.get_tensor(output_detail["index"]), output_detail).copy())
    return np.concatenate(outputs, axis=0)


def invoke_seconds(interpreter, repeats):
    """Wall-clock seconds of each of ``repeats`` invocations (inputs already set)."""
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        interpreter.invoke()
        times[i] = time.perf_counter() - start
    return times
