"""dias.weights.onnx_reader against the `onnx` package: the same initializers (values, dtypes, shapes) and nodes."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from tiny_onnx import dinov2_onnx_bytes, tiny_vit

from dias.errors import DamagedFileError
from dias.weights.onnx_reader import read_onnx


def _every_kind_of_tensor() -> list[TensorProto]:
    rng = np.random.default_rng(0)
    raw = [
        numpy_helper.from_array(rng.standard_normal((2, 3, 4)).astype(np.float32), "raw_float32"),
        numpy_helper.from_array(rng.standard_normal(5).astype(np.float16), "raw_float16"),
        numpy_helper.from_array(np.array([-3, 0, 2**40], np.int64), "raw_int64"),
        numpy_helper.from_array(np.array(7.5, np.float64), "raw_scalar"),
        numpy_helper.from_array(np.zeros((0, 3), np.float32), "raw_empty"),
    ]
    typed = [  # make_tensor without raw=True fills the typed repeated fields instead of raw_data
        helper.make_tensor("typed_float", TensorProto.FLOAT, [2, 2], [1.5, -2.0, 0.0, 3.25]),
        helper.make_tensor("typed_int64", TensorProto.INT64, [3], [-1, 5, -(2**40)]),
        helper.make_tensor("typed_int32", TensorProto.INT32, [3], [-7, 0, 2**30]),
        helper.make_tensor("typed_uint8", TensorProto.UINT8, [2], [0, 255]),
        helper.make_tensor("typed_double", TensorProto.DOUBLE, [2], [0.1, -1e300]),
        helper.make_tensor("typed_float16", TensorProto.FLOAT16, [3], np.array([0.5, -2, 1e-5], np.float16)),
        helper.make_tensor("typed_bool", TensorProto.BOOL, [2], [True, False]),
    ]
    return raw + typed


def _model_bytes(tensors: list[TensorProto]) -> bytes:
    nodes = [
        helper.make_node("MatMul", ["x", "raw_float32"], ["y"], "/a/MatMul"),
        helper.make_node("Add", ["y", "typed_float"], ["z", "w"], "/b/Add", domain="", alpha=1.0),
        helper.make_node("Identity", ["z"], ["out"]),  # no name
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], initializer=tensors,
    )  # fmt: skip
    return helper.make_model(graph, doc_string="skipped", producer_name="test").SerializeToString()


def _assert_same_as_onnx(data: bytes) -> None:
    import onnx

    model = onnx.load_from_string(data)
    graph = read_onnx(data)
    assert list(graph.initializers) == [t.name for t in model.graph.initializer]
    for tensor in model.graph.initializer:
        expected, got = numpy_helper.to_array(tensor), graph.initializers[tensor.name]
        assert got.dtype == expected.dtype and got.shape == expected.shape, tensor.name
        np.testing.assert_array_equal(got, expected, err_msg=tensor.name)
    assert [(n.name, n.op_type, tuple(n.input), tuple(n.output)) for n in model.graph.node] == [
        tuple(node) for node in graph.nodes
    ]


def test_every_tensor_kind_and_node_field_reads_as_onnx_reads_it():
    _assert_same_as_onnx(_model_bytes(_every_kind_of_tensor()))


def test_the_dinov2_layout_reads_as_onnx_reads_it():
    _assert_same_as_onnx(dinov2_onnx_bytes(tiny_vit()))


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.999])
def test_a_truncated_model_is_a_damaged_file(keep):
    data = _model_bytes(_every_kind_of_tensor())
    with pytest.raises(DamagedFileError):
        read_onnx(data[: int(len(data) * keep)])


def test_bytes_that_are_not_onnx_are_a_damaged_file():
    with pytest.raises(DamagedFileError, match="not ONNX"):
        read_onnx(b"PK\x03\x04 a zip, not a model")


def test_external_data_is_refused_by_name():
    tensor = numpy_helper.from_array(np.ones(2, np.float32), "outside")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    with pytest.raises(DamagedFileError, match="outside keeps its values in another file"):
        read_onnx(_model_bytes([tensor]))
