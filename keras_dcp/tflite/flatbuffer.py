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


def model_bytes(model) -> bytes:
    """``model`` as bytes: a path to a ``.tflite`` file, or bytes already."""
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if os.path.isdir(path):
            raise ValueError(f"{path!r} is a directory; expected a .tflite file.")
        if not os.path.exists(path):
            raise ValueError(f"The TFLite model {path!r} does not exist.")
        with open(path, "rb") as handle:
            return handle.read()
    raise ValueError(f"Expected a .tflite path or bytes; got {type(model).__name__}.")


def load_model(model):
    """The mutable object tree (``schema.ModelT``) of a ``.tflite`` model.

    Raises:
        ValueError: for anything that is not a whole TFLite flatbuffer
            (wrong identifier, truncated, garbled offsets).
    """
    schema = schema_module()
    content = model_bytes(model)
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ValueError("Not a TFLite flatbuffer (missing the 'TFL3' identifier).")
    try:
        model_t = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
        if not model_t.subgraphs:
            raise ValueError("it has no subgraph")
        # Touch every operator and tensor so a truncated buffer fails here, not later.
        for subgraph in model_t.subgraphs:
            for operator in subgraph.operators or []:
                model_t.operatorCodes[operator.opcodeIndex]
            for tensor in subgraph.tensors or []:
                model_t.buffers[tensor.buffer]
    except Exception as error:  # struct.error, IndexError, ...: a damaged file
        raise ValueError(f"Not a valid TFLite flatbuffer (truncated or corrupted: {error or type(error).__name__}).") from None
    return model_t


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


# --- surgery: what the exporters change in a flatbuffer ------------------------------------


def tail_start(model_t) -> int:
    """Index of the first operator of the defense tail in a calibrated model.

    The tail starts at the last SOFTMAX, or at the FULLY_CONNECTED that feeds
    it (the classifier head) when there is one.
    """
    subgraph = model_t.subgraphs[0]
    names = [opcode_name(model_t, op) for op in subgraph.operators]
    softmaxes = [i for i, name in enumerate(names) if name == "SOFTMAX"]
    if not softmaxes:
        raise ValueError(
            "tail='float' needs a softmax in the model (the defense tail starts there); "
            "none found. Export with tail='int8'."
        )
    start = softmaxes[-1]
    softmax_input = subgraph.operators[start].inputs[0]
    for i, operator in enumerate(subgraph.operators[:start]):
        if softmax_input in operator.outputs and names[i] == "FULLY_CONNECTED":
            return i
    return start


def downstream(subgraph, start: int) -> list[int]:
    """Operator indices reachable from operator ``start`` (itself included)."""
    reached = {start}
    produced = set(subgraph.operators[start].outputs)
    for i in range(start + 1, len(subgraph.operators)):
        operator = subgraph.operators[i]
        if produced.intersection(operator.inputs):
            reached.add(i)
            produced.update(operator.outputs)
    return sorted(reached)


def quantize_output(content: bytes, scale: float = 1.0 / 255.0, zero_point: int = -128) -> bytes:
    """Append ``QUANTIZE`` to the float output: ``q = round(y / scale) + zero_point``, int8.

    With the default scale and zero point, ``[0, 1]`` maps onto ``[-128, 127]``
    (probabilities lose at most ``1/510`` each).
    """
    schema = schema_module()
    model_t = load_model(content)
    subgraph = model_t.subgraphs[0]
    (output_index,) = subgraph.outputs
    source = subgraph.tensors[output_index]
    buffer = schema.BufferT()
    model_t.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.shape = list(source.shape)
    tensor.shapeSignature = None if source.shapeSignature is None else list(source.shapeSignature)
    tensor.type = schema.TensorType.INT8
    tensor.buffer = len(model_t.buffers) - 1
    tensor.name = (source.name.decode() if isinstance(source.name, bytes) else source.name) + "/int8"
    tensor.quantization = schema.QuantizationParametersT()
    tensor.quantization.scale = [float(scale)]
    tensor.quantization.zeroPoint = [int(zero_point)]
    subgraph.tensors.append(tensor)
    new_index = len(subgraph.tensors) - 1
    opcode = None
    for i, code in enumerate(model_t.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.QUANTIZE:
            opcode = i
    if opcode is None:
        code = schema.OperatorCodeT()
        code.builtinCode = schema.BuiltinOperator.QUANTIZE
        code.deprecatedBuiltinCode = schema.BuiltinOperator.QUANTIZE
        code.version = 2  # QUANTIZE to int8 is version 2 in TFLite's op versioning
        model_t.operatorCodes.append(code)
        opcode = len(model_t.operatorCodes) - 1
    operator = schema.OperatorT()
    operator.opcodeIndex = opcode
    operator.inputs = [output_index]
    operator.outputs = [new_index]
    subgraph.operators.append(operator)
    subgraph.outputs = [new_index]
    for signature in model_t.signatureDefs or []:
        for item in signature.outputs or []:
            if item.tensorIndex == output_index:
                item.tensorIndex = new_index
    return serialize(model_t)


def stitch(backbone: bytes, tail: bytes) -> bytes:
    """One model: ``tail(backbone(x))``, from two single-input/output ``.tflite`` models.

    The tail's tensors, buffers and operators are appended to the backbone's
    main subgraph (indices shifted, operator codes merged) and the tail's
    input tensor is replaced by the backbone's output. Shapes must agree.
    """
    first, second = load_model(backbone), load_model(tail)
    sub1, sub2 = first.subgraphs[0], second.subgraphs[0]
    (joint,) = sub1.outputs
    (tail_input,) = sub2.inputs
    tensor_offset, buffer_offset = len(sub1.tensors), len(first.buffers)
    first.buffers.extend(second.buffers)
    for tensor in sub2.tensors:
        # Buffer 0 is the shared empty sentinel in both models.
        tensor.buffer = 0 if tensor.buffer == 0 else tensor.buffer + buffer_offset
        sub1.tensors.append(tensor)
    codes = {}
    for i, code in enumerate(second.operatorCodes):
        key = (code.builtinCode, code.deprecatedBuiltinCode, code.customCode, code.version)
        for j, existing in enumerate(first.operatorCodes):
            if (existing.builtinCode, existing.deprecatedBuiltinCode, existing.customCode, existing.version) == key:
                codes[i] = j
                break
        else:
            first.operatorCodes.append(code)
            codes[i] = len(first.operatorCodes) - 1

    def remap(index):
        if index < 0:
            return index
        return joint if index == tail_input else index + tensor_offset

    for operator in sub2.operators:
        operator.opcodeIndex = codes[operator.opcodeIndex]
        operator.inputs = [remap(i) for i in operator.inputs]
        operator.outputs = [remap(i) for i in operator.outputs]
        if operator.intermediates is not None:
            operator.intermediates = [remap(i) for i in operator.intermediates]
        sub1.operators.append(operator)
    new_output = remap(sub2.outputs[0])
    sub1.outputs = [new_output]
    for signature in first.signatureDefs or []:
        for item in signature.outputs or []:
            if item.tensorIndex == joint:
                item.tensorIndex = new_output
    return serialize(first)
