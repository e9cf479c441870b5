"""A small ONNX reader: the initializers and the nodes of a model file, without the `onnx` package.

An .onnx file is one protobuf message, ModelProto (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto).
Only what a weight conversion needs is decoded here:

    ModelProto.graph (7) -> GraphProto
    GraphProto.node (1) -> NodeProto: input (1), output (2), name (3), op_type (4)
    GraphProto.initializer (5) -> TensorProto: dims (1), data_type (2), float_data (4), int32_data (5),
        int64_data (7), name (8), raw_data (9), double_data (10), uint64_data (11), data_location (14)

Every other field is skipped by its wire type. Tests check the result against `onnx` on graphs it builds.

    graph = read_onnx(data)                      # bytes of an .onnx file
    graph.initializers["cls_token"]              # numpy array, its dims and dtype
    [node.name for node in graph.nodes if node.op_type == "MatMul"]
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dias.errors import DamagedFileError

# protobuf wire types
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
# TensorProto.DataType -> numpy dtype (FLOAT16 travels in int32_data as bit patterns)
DTYPES = {
    1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
    9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64,
}  # fmt: skip
# which typed repeated field holds the values of each data type when raw_data is empty (onnx.proto's comments)
FLOAT_DATA, INT32_DATA, INT64_DATA, DOUBLE_DATA, UINT64_DATA = 4, 5, 7, 10, 11
TYPED_FIELD = {1: FLOAT_DATA, 7: INT64_DATA, 11: DOUBLE_DATA, 12: UINT64_DATA, 13: UINT64_DATA}
EXTERNAL = 1  # TensorProto.DataLocation: the values live in another file


class OnnxFormatError(DamagedFileError):
    """The bytes are not a complete ONNX model (a truncated or damaged download, or another kind of file)."""


class OnnxNode(NamedTuple):
    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


class OnnxGraph(NamedTuple):
    initializers: dict[str, np.ndarray]
    nodes: list[OnnxNode]


def read_onnx(data: bytes | memoryview) -> OnnxGraph:
    """The graph's initializers (by name, as numpy arrays) and nodes, in file order."""
    view = memoryview(data)
    graphs = [value for number, value in _fields(view) if number == 7]
    if not graphs:
        raise OnnxFormatError("no graph in the ONNX data: not an ONNX model, or an empty one")
    initializers: dict[str, np.ndarray] = {}
    nodes: list[OnnxNode] = []
    for number, value in _fields(graphs[-1]):
        if number == 1:
            nodes.append(_node(value))
        elif number == 5:
            name, array = _tensor(value)
            initializers[name] = array
    return OnnxGraph(initializers, nodes)


def _fields(view: memoryview):
    """(field number, value) for each field of a message: an int for varint/fixed, a memoryview otherwise."""
    position, end = 0, len(view)
    while position < end:
        key, position = _varint(view, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            value, position = _varint(view, position)
        elif wire_type == LENGTH_DELIMITED:
            size, position = _varint(view, position)
            if position + size > end:
                raise OnnxFormatError(f"a field runs {position + size - end} bytes past the end: truncated data")
            value, position = view[position : position + size], position + size
        elif wire_type in (FIXED64, FIXED32):
            width = 8 if wire_type == FIXED64 else 4
            if position + width > end:
                raise OnnxFormatError("a fixed-width field runs past the end: truncated data")
            value, position = int.from_bytes(view[position : position + width], "little"), position + width
        else:
            raise OnnxFormatError(f"wire type {wire_type} at byte {position}: damaged data, or not ONNX")
        yield number, value


def _varint(view: memoryview, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(view):
            raise OnnxFormatError("a number runs past the end: truncated data")
        byte = view[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise OnnxFormatError("a number longer than 10 bytes: damaged data, or not ONNX")


def _text(value: memoryview) -> str:
    return bytes(value).decode("utf-8")


def _node(message: memoryview) -> OnnxNode:
    inputs, outputs, name, op_type = [], [], "", ""
    for number, value in _fields(message):
        if number == 1:
            inputs.append(_text(value))
        elif number == 2:
            outputs.append(_text(value))
        elif number == 3:
            name = _text(value)
        elif number == 4:
            op_type = _text(value)
    return OnnxNode(name, op_type, tuple(inputs), tuple(outputs))


def _tensor(message: memoryview) -> tuple[str, np.ndarray]:
    """(name, values) of a TensorProto; repeated numbers may be packed or not, as protobuf allows."""
    dims: list[int] = []
    data_type, name, raw = 0, "", None
    typed: dict[int, list] = {}  # field number -> unpacked values, or packed byte strings
    for number, value in _fields(message):
        if number == 1:
            dims += _varints(value) if isinstance(value, memoryview) else [value]
        elif number == 2:
            data_type = value
        elif number == 8:
            name = _text(value)
        elif number == 9:
            raw = value
        elif number == 14 and value == EXTERNAL:
            raise OnnxFormatError(f"tensor {name or '?'} keeps its values in another file; pass a single-file model")
        elif number in (FLOAT_DATA, INT32_DATA, INT64_DATA, DOUBLE_DATA, UINT64_DATA):
            typed.setdefault(number, []).append(value)
    if data_type not in DTYPES:
        raise OnnxFormatError(f"tensor {name!r} has data type {data_type}, which this reader does not decode")
    dtype = np.dtype(DTYPES[data_type]).newbyteorder("<")
    if raw is not None:
        values = np.frombuffer(raw, dtype=dtype).copy()
    else:
        values = _typed_values(typed.get(TYPED_FIELD.get(data_type, INT32_DATA), []), data_type)
    count = int(np.prod(dims)) if dims else 1
    if values.size != count:
        raise OnnxFormatError(f"tensor {name!r} holds {values.size} values for dims {dims}: truncated or damaged")
    return name, values.reshape(dims).astype(DTYPES[data_type], copy=False)


def _typed_values(parts: list, data_type: int) -> np.ndarray:
    """The values of a typed repeated field; int32_data holds 16-bit floats and small ints as integers."""
    field = TYPED_FIELD.get(data_type, INT32_DATA)
    if field in (FLOAT_DATA, DOUBLE_DATA):  # fixed width: packed bytes, or one int (the bit pattern) per value
        code, width = ("<f", 4) if field == FLOAT_DATA else ("<d", 8)
        blob = b"".join(bytes(p) if isinstance(p, memoryview) else p.to_bytes(width, "little") for p in parts)
        return np.frombuffer(blob, dtype=code).copy()
    numbers = [n for p in parts for n in (_varints(p) if isinstance(p, memoryview) else [p])]
    if field == INT64_DATA:  # varints are unsigned 64-bit; negative int64s come back by two's complement
        return np.array(numbers, dtype=np.uint64).view(np.int64)
    if field == UINT64_DATA:
        return np.array(numbers, dtype=np.uint64)
    wide = np.array(numbers, dtype=np.uint64).view(np.int64)  # int32 fields sign-extend to 64 bits
    if data_type == 10:  # FLOAT16: the 16 bits of each value
        return wide.astype(np.uint16).view(np.float16)
    return wide.astype(DTYPES[data_type])


def _varints(view: memoryview) -> list[int]:
    numbers, position = [], 0
    while position < len(view):
        number, position = _varint(view, position)
        numbers.append(number)
    return numbers
