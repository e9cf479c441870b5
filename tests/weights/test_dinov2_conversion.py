"""The Dinov2Model-export -> timm mapping: a tiny ViT written in the export's layout comes back exactly."""

import numpy as np
import pytest
import torch
from tiny_onnx import IMAGE_SIZE, dinov2_onnx_bytes, tiny_vit

from dias.weights.dinov2 import ConversionError, hf_state_dict, timm_state_dict
from dias.weights.onnx_reader import OnnxGraph, read_onnx


def test_the_converted_weights_give_the_same_features_as_the_original_vit():
    original = tiny_vit(seed=0)
    state = timm_state_dict(hf_state_dict(read_onnx(dinov2_onnx_bytes(original))))
    rebuilt = tiny_vit(seed=1)  # other random weights, all replaced below
    result = rebuilt.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for key, value in original.state_dict().items():
        assert torch.equal(state[key], value), key
    images = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.forward_features(images), original.forward_features(images), rtol=0, atol=0)


def test_linear_weights_are_named_by_the_matmul_that_reads_them_and_transposed():
    original = tiny_vit()
    hf = hf_state_dict(read_onnx(dinov2_onnx_bytes(original)))
    qkv = original.state_dict()["blocks.1.attn.qkv.weight"].numpy()
    np.testing.assert_array_equal(hf["encoder.layer.1.attention.attention.value.weight"], qkv[64:])
    assert not any(key.startswith("decoder") for key in hf)  # the head is ignored
    assert hf["embeddings.position_embeddings"].shape == (1, 1 + 16, 32)


def test_a_graph_without_the_folded_position_embedding_is_refused():
    graph = read_onnx(dinov2_onnx_bytes(tiny_vit()))
    nodes = [node for node in graph.nodes if node.op_type != "Reshape"]
    with pytest.raises(ConversionError, match="position embedding"):
        hf_state_dict(OnnxGraph(graph.initializers, nodes))


def test_an_unknown_backbone_weight_is_refused_by_name():
    hf = hf_state_dict(read_onnx(dinov2_onnx_bytes(tiny_vit())))
    with pytest.raises(ConversionError, match="encoder.layer.0.extra.weight"):
        timm_state_dict({**hf, "encoder.layer.0.extra.weight": np.zeros(2, np.float32)})


def test_a_missing_query_is_refused():
    hf = hf_state_dict(read_onnx(dinov2_onnx_bytes(tiny_vit())))
    del hf["encoder.layer.0.attention.attention.query.weight"]
    with pytest.raises(ConversionError, match="block 0 lacks the attention weight of query"):
        timm_state_dict(hf)
