"""A DINOv2 ViT exported to ONNX from Hugging Face's `Dinov2Model` -> a timm `vit_*_patch14_dinov2` state dict.

Two pure steps, each testable alone:

    hf = hf_state_dict(graph, prefix="backbone.")   # the Dinov2Model's own names, weights as nn.Linear keeps them
    state = timm_state_dict(hf)                      # timm's names: qkv fused, LayerScale as ls1/ls2.gamma

What the exporter did to the weights, and how it is undone:
- A Linear y = x W^T + b becomes MatMul(x, W^T) + Add(b): W^T (in, out) is an anonymous `onnx::MatMul_*`
  initializer, and only the MatMul node that reads it says which layer it is
  (`/backbone/encoder/layer.0/attention/attention/key/MatMul` -> `backbone.encoder.layer.0.attention.attention.key`).
- The position embedding (1, 1 + h*w, C) was constant-folded into two pieces: the class token's row (1, 1, C),
  which a Concat under /backbone/embeddings/ reads, and the patch grid (1, h*w, C), which a Reshape there reads
  before resampling it to the input's grid. They are joined again here, class row first.
- The biases, norms, LayerScale factors and the class token keep their names.
Initializers outside the backbone (a task head) are ignored.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from dias.weights.onnx_reader import OnnxFormatError, OnnxGraph

HF_PREFIX = "backbone."  # where the exported model keeps its Dinov2Model
EMBEDDINGS_SCOPE = "/backbone/embeddings/"
POSITION_KEY = "embeddings.position_embeddings"
LAYER = r"encoder\.layer\.(\d+)\."
# Dinov2Model name (after the prefix) -> timm name; {i} is the block index
RENAMES = (
    (r"embeddings\.cls_token", "cls_token"),
    (r"embeddings\.position_embeddings", "pos_embed"),
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    (LAYER + r"norm([12])\.(weight|bias)", r"blocks.\1.norm\2.\3"),
    (LAYER + r"attention\.output\.dense\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (LAYER + r"layer_scale([12])\.lambda1", r"blocks.\1.ls\2.gamma"),
    (LAYER + r"mlp\.(fc[12])\.(weight|bias)", r"blocks.\1.mlp.\2.\3"),
    (r"layernorm\.(weight|bias)", r"norm.\1"),
)
QKV = re.compile(LAYER + r"attention\.attention\.(query|key|value)\.(weight|bias)")
IGNORED = ("embeddings.mask_token",)  # used only for masked-image training


class ConversionError(OnnxFormatError):
    """The ONNX graph is not a DINOv2 backbone in the Hugging Face export layout."""


def hf_state_dict(graph: OnnxGraph, *, prefix: str = HF_PREFIX) -> dict[str, np.ndarray]:
    """The backbone's weights under their Dinov2Model names (without `prefix`), Linear weights as (out, in)."""
    consumers: dict[str, list] = {}
    for node in graph.nodes:
        for name in node.inputs:
            consumers.setdefault(name, []).append(node)
    state = {k[len(prefix) :]: v for k, v in graph.initializers.items() if k.startswith(prefix)}
    class_row = grid = None
    for key, value in graph.initializers.items():
        if key.startswith(prefix):
            continue
        for node in consumers.get(key, []):
            if node.op_type == "MatMul" and node.name.startswith("/" + prefix.rstrip(".") + "/"):
                layer = node.name[len(prefix) + 1 :].removesuffix("/MatMul").replace("/", ".")
                state[f"{layer}.weight"] = value.T  # stored as W^T (in, out)
            elif node.name.startswith(EMBEDDINGS_SCOPE) and node.op_type == "Concat" and value.ndim == 3:
                class_row = value
            elif node.name.startswith(EMBEDDINGS_SCOPE) and node.op_type == "Reshape" and value.ndim == 3:
                grid = value
    if class_row is None or grid is None:
        raise ConversionError(
            "no constant-folded position embedding (a Concat and a Reshape input under /backbone/embeddings/) "
            "in the ONNX graph: not the expected DINOv2 export"
        )
    state[POSITION_KEY] = np.concatenate([class_row, grid], axis=1)  # (1, 1 + h*w, C)
    return state


def timm_state_dict(hf: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """timm names for Dinov2Model weights; q, k and v (each (C, C) and (C,)) become qkv ((3C, C) and (3C,))."""
    state: dict[str, torch.Tensor] = {}
    parts: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for key, value in hf.items():
        if key in IGNORED:
            continue
        qkv = QKV.fullmatch(key)
        if qkv:
            block, which, kind = qkv.groups()
            parts.setdefault((block, kind), {})[which] = value
            continue
        for pattern, replacement in RENAMES:
            if re.fullmatch(pattern, key):
                state[re.sub(pattern, replacement, key)] = torch.from_numpy(np.ascontiguousarray(value))
                break
        else:
            raise ConversionError(f"no timm name for the backbone weight {key!r}: not the expected DINOv2 export")
    for (block, kind), found in parts.items():
        if set(found) != {"query", "key", "value"}:
            missing = sorted({"query", "key", "value"} - set(found))
            raise ConversionError(f"block {block} lacks the attention {kind} of {', '.join(missing)}")
        fused = np.concatenate([found["query"], found["key"], found["value"]], axis=0)
        state[f"blocks.{block}.attn.qkv.{kind}"] = torch.from_numpy(np.ascontiguousarray(fused))
    return dict(sorted(state.items()))
