"""Read a ``.tflite`` flatbuffer: its operators, tensors and quantization.

Uses the flatbuffer schema bindings that ship with ``ai_edge_litert`` (the
same ``schema_py_generated`` module TensorFlow ships), so no interpreter is
needed to list what a model contains.
"""

from __future__ import annotations

import os


def schema_module():
    """The flatbuffer schema bindings (``schema_py_generated``) of the TFLite format."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # older runtimes: TensorFlow carries the same module
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def _enum_names(enum_class):
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_")}


def model_bytes(model):
    """``model`` as bytes: a path to a ``.tflite`` file, or bytes already."""
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as handle:
            return handle.read()
    raise ValueError(f"Expected a .tflite path or bytes; got {type(model).__name__}.")


def load_model(model):
    """The mutable object tree (``schema.ModelT``) of a ``.tflite`` model."""
    schema = schema_module()
    content = model_bytes(model)
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ValueError("Not a TFLite flatbuffer (missing the 'TFL3' identifier).")
    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))


def serialize(model_t):
    """Bytes of a ``schema.ModelT`` (the inverse of :func:`load_model`)."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model_t.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def opcode_name(model_t, operator):
    """Builtin name of ``operator`` (``"CONV_2D"``), or ``"CUSTOM:<code>"``."""
    names = _enum_names(schema_module().BuiltinOperator)
    code = model_t.operatorCodes[operator.opcodeIndex]
    # The schema keeps small codes in a deprecated int8 field and large ones in
    # a newer int32 field; the larger of the two is the real code.
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    name = names.get(builtin, f"BUILTIN_{builtin}")
    if name == "CUSTOM":
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        return f"CUSTOM:{custom}"
    return name


def tensor_info(model_t, subgraph, index):
    """``dict(name, dtype, shape, quantized, scale, zero_point, constant)`` of tensor ``index``."""
    types = _enum_names(schema_module().TensorType)
    tensor = subgraph.tensors[index]
    quant = tensor.quantization
    scale = list(quant.scale) if quant is not None and quant.scale is not None else []
    zero_point = list(quant.zeroPoint) if quant is not None and quant.zeroPoint is not None else []
    buffer = model_t.buffers[tensor.buffer] if tensor.buffer < len(model_t.buffers) else None
    constant = buffer is not None and (
        (buffer.data is not None and len(buffer.data) > 0) or (getattr(buffer, "size", 0) or 0) > 0
    )
    name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
    return {
        "name": name,
        "dtype": types.get(tensor.type, str(tensor.type)).lower(),
        "shape": [int(d) for d in (tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape)]
        if tensor.shape is not None else [],
        "quantized": bool(scale),
        "scale": [float(s) for s in scale[:4]],
        "zero_point": [int(z) for z in zero_point[:4]],
        "per_channel": len(scale) > 1,
        "constant": bool(constant),
    }


def operators(model):
    """Operators of the main subgraph, in execution order.

    Returns:
        A list of dicts ``{"index", "op", "inputs", "outputs"}`` where inputs
        and outputs are :func:`tensor_info` dicts (optional inputs, index -1,
        are skipped).
    """
    model_t = model if hasattr(model, "subgraphs") else load_model(model)
    subgraph = model_t.subgraphs[0]
    result = []
    for index, operator in enumerate(subgraph.operators):
        result.append({
            "index": index,
            "op": opcode_name(model_t, operator),
            "inputs": [tensor_info(model_t, subgraph, i) for i in operator.inputs if i >= 0],
            "outputs": [tensor_info(model_t, subgraph, i) for i in operator.outputs if i >= 0],
            "input_ids": [int(i) for i in operator.inputs if i >= 0],
            "output_ids": [int(i) for i in operator.outputs if i >= 0],
        })
    return result


def io_tensors(model):
    """``(inputs, outputs)``: :func:`tensor_info` dicts of the model's inputs and outputs."""
    model_t = model if hasattr(model, "subgraphs") else load_model(model)
    subgraph = model_t.subgraphs[0]
    return (
        [tensor_info(model_t, subgraph, i) for i in subgraph.inputs],
        [tensor_info(model_t, subgraph, i) for i in subgraph.outputs],
    )


def op_names(model):
    """Just the builtin names of the main subgraph's operators, in order."""
    return [entry["op"] for entry in operators(model)]
