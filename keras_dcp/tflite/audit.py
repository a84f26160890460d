"""``audit_tflite``: which ops a ``.tflite`` model has, and where they can run.

For every operator: its builtin name, its activation types and quantization,
whether LiteRT's XNNPACK delegate takes it in this runtime (read from the
interpreter's delegated partitions, not from a table), and whether the Edge TPU
compiler can map it (a table of the Coral documentation's supported ops plus
the rule that every non-constant tensor must be 8-bit quantized).
"""

from __future__ import annotations

from typing import Any

from keras_dcp.tflite import flatbuffer

#: Builtin ops the Edge TPU compiler maps (Coral docs, "Supported operations",
#: compiler 16), when all their activations are int8/uint8.
EDGETPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "HARD_SWISH", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "MAXIMUM",
    "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX",
    "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT",
    "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE",
    "TRANSPOSE_CONV", "UNIDIRECTIONAL_SEQUENCE_LSTM",
})
#: Integer types an op may read besides 8-bit activations (shapes, axes, biases).
_INDEX_TYPES = {"int32", "int64"}
_EIGHT_BIT = {"int8", "uint8"}


def _edgetpu_status(entry):
    """``(supported, reason)`` for one operator under the Edge TPU rules."""
    op = entry["op"]
    if op not in EDGETPU_OPS:
        return False, f"{op} is not an Edge TPU op"
    for tensor in entry["inputs"] + entry["outputs"]:
        if tensor["constant"] and (tensor["dtype"] in _INDEX_TYPES or tensor["dtype"] in _EIGHT_BIT):
            continue
        if tensor["dtype"] in _INDEX_TYPES and not tensor["quantized"]:
            continue
        if tensor["dtype"] not in _EIGHT_BIT or not tensor["quantized"]:
            return False, f"tensor {tensor['name']!r} is {tensor['dtype']}, not 8-bit quantized"
    return True, "mapped"


def _xnnpack_nodes(content):
    """Indices of the original nodes that the default XNNPACK delegate takes.

    The interpreter lists the original nodes followed by one DELEGATE node per
    partition; a node belongs to a partition when it reads only tensors that
    descend from the partition's inputs (or constants) and feeds its outputs.
    Returns None when the runtime cannot be asked.
    """
    try:
        from keras_dcp.tflite.interpreter import make_interpreter

        details = make_interpreter(content, num_threads=1, xnnpack=True)._get_ops_details()  # noqa: SLF001
    except Exception:  # noqa: BLE001 (an audit must still list ops without a runtime)
        return None
    nodes = [d for d in details if d["op_name"] != "DELEGATE"]
    partitions = [d for d in details if d["op_name"] == "DELEGATE"]
    producers = {}
    for node in nodes:
        for tensor in node["outputs"]:
            producers[int(tensor)] = node["index"]
    taken = set()
    for partition in partitions:
        boundary_in = {int(t) for t in partition["inputs"]}
        boundary_out = {int(t) for t in partition["outputs"]}
        # Walk back from the partition outputs until the partition inputs.
        stack = [producers[t] for t in boundary_out if t in producers]
        seen = set()
        while stack:
            index = stack.pop()
            if index in seen:
                continue
            seen.add(index)
            for tensor in nodes[index]["inputs"]:
                tensor = int(tensor)
                if tensor in boundary_in or tensor < 0 or tensor not in producers:
                    continue
                stack.append(producers[tensor])
        taken.update(seen)
    return taken


def audit_tflite(model: Any) -> dict[str, Any]:
    """A report (plain dict, JSON-ready) on a ``.tflite`` model.

    Keys: ``ops`` (one entry per operator: index, op, input/output dtypes,
    quantized, xnnpack, edgetpu, edgetpu_reason), ``op_counts``, ``inputs``
    and ``outputs`` (dtype, shape, scale, zero_point), ``xnnpack_known``,
    ``edgetpu_all`` (every op maps) and ``edgetpu_unsupported`` (op names).
    """
    content = flatbuffer.model_bytes(model)
    entries = flatbuffer.operators(content)
    inputs, outputs = flatbuffer.io_tensors(content)
    xnnpack = _xnnpack_nodes(content)
    ops, counts, unsupported = [], {}, []
    for entry in entries:
        mapped, reason = _edgetpu_status(entry)
        activations = [t for t in entry["inputs"] + entry["outputs"] if not t["constant"]]
        ops.append({
            "index": entry["index"],
            "op": entry["op"],
            "input_types": [t["dtype"] for t in entry["inputs"] if not t["constant"]],
            "output_types": [t["dtype"] for t in entry["outputs"]],
            "quantized": bool(activations) and all(t["quantized"] for t in activations),
            "xnnpack": None if xnnpack is None else entry["index"] in xnnpack,
            "edgetpu": mapped,
            "edgetpu_reason": reason,
        })
        counts[entry["op"]] = counts.get(entry["op"], 0) + 1
        if not mapped and entry["op"] not in unsupported:
            unsupported.append(entry["op"])

    def describe(tensor):
        return {key: tensor[key] for key in ("name", "dtype", "shape", "scale", "zero_point")}

    return {
        "ops": ops,
        "op_counts": counts,
        "inputs": [describe(t) for t in inputs],
        "outputs": [describe(t) for t in outputs],
        "xnnpack_known": xnnpack is not None,
        "xnnpack_count": None if xnnpack is None else len(xnnpack),
        "edgetpu_all": not unsupported,
        "edgetpu_unsupported": unsupported,
    }


def format_report(report):
    """Human-readable text of :func:`audit_tflite`'s report."""
    lines = []
    for label, tensors in (("input", report["inputs"]), ("output", report["outputs"])):
        for t in tensors:
            quant = f"scale={t['scale'][0]:.6g} zero_point={t['zero_point'][0]}" if t["scale"] else "not quantized"
            lines.append(f"{label:6s} {t['name']}: {t['dtype']} {t['shape']} ({quant})")
    lines.append("")
    lines.append(f"{'#':>4}  {'op':24s} {'types':22s} {'xnnpack':8s} edgetpu")
    for op in report["ops"]:
        types = ",".join(sorted(set(op["input_types"]))) + "->" + ",".join(sorted(set(op["output_types"])))
        xnn = "?" if op["xnnpack"] is None else ("yes" if op["xnnpack"] else "no")
        tpu = "yes" if op["edgetpu"] else f"no ({op['edgetpu_reason']})"
        lines.append(f"{op['index']:>4}  {op['op']:24s} {types:22s} {xnn:8s} {tpu}")
    lines.append("")
    total = len(report["ops"])
    if report["xnnpack_known"]:
        lines.append(f"XNNPACK: {report['xnnpack_count']}/{total} ops delegated in this runtime.")
    mapped = sum(op["edgetpu"] for op in report["ops"])
    lines.append(f"Edge TPU: {mapped}/{total} ops supported"
                 + ("." if report["edgetpu_all"] else f"; not supported: {', '.join(report['edgetpu_unsupported'])}."))
    return "\n".join(lines)
