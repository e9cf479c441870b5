"""The official releases' weights (DIAS, SmoothSA): the state-dict names of the parts every method shares,
and the loader that maps a release's keys onto a model's.

A release checkpoint (e.g. DIAS's `42-0027.pth`) holds one flat state dict whose keys start with "m.", the
name of the release's model wrapper; its backbone sits under "m.encode_backbone.1." (index 0 of that
Sequential is the resize). A method adds the names of its own parts (dias.methods.<name>.official):

    key_map = official_key_map(model, DIAS_NAMES)        # release key -> our key, for every key we hold
    load_with_key_map(model, "42-0027.pth", key_map, release="DIAS")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dias.io import WeightsMismatchError, check_state_dict, read_state_dict, unwrap_state_dict
from dias.modules.backbone import OFFICIAL_BACKBONE_PREFIX

if TYPE_CHECKING:
    import torch
    from torch import nn

OFFICIAL_PREFIX = "m."

# Our parameter names -> the release's (after "m."), for the parts every method shares. Decoder layer
# entries use "{i}".
OFFICIAL_NAMES = {
    "project.norm": "encode_project.0",
    "project.fc1": "encode_project.1",
    "project.fc2": "encode_project.3",
    "slot_attention.input_norm": "aggregat.norm1kv",
    "slot_attention.key_proj": "aggregat.proj_k",
    "slot_attention.value_proj": "aggregat.proj_v",
    "slot_attention.query_norm": "aggregat.norm1q",
    "slot_attention.query_proj": "aggregat.proj_q",
    "slot_attention.gru": "aggregat.rnn",
    "slot_attention.mlp_norm": "aggregat.norm2",
    "slot_attention.mlp.fc1": "aggregat.ffn.0",
    "slot_attention.mlp.fc2": "aggregat.ffn.2",
    "decoder.feature_proj.linear": "decode.project1.0",
    "decoder.feature_proj.norm": "decode.project1.1",
    "decoder.slot_proj.linear": "decode.project2.0",
    "decoder.slot_proj.norm": "decode.project2.1",
    "decoder.pos_embed": "decode.posit_embed._pe",
    "decoder.mask_token": "decode.mask_token",
    "decoder.input_norm": "decode.norm0",
    "decoder.layers.{i}.self_attn_norm": "decode.backbone.layers.{i}.norm1",
    "decoder.layers.{i}.self_attn.in_proj": "decode.backbone.layers.{i}.self_attn.in_proj_weight",
    "decoder.layers.{i}.self_attn.out_proj": "decode.backbone.layers.{i}.self_attn.out_proj",
    "decoder.layers.{i}.cross_attn_norm": "decode.backbone.layers.{i}.norm2",
    "decoder.layers.{i}.cross_attn.in_proj": "decode.backbone.layers.{i}.multihead_attn.in_proj_weight",
    "decoder.layers.{i}.cross_attn.out_proj": "decode.backbone.layers.{i}.multihead_attn.out_proj",
    "decoder.layers.{i}.mlp_norm": "decode.backbone.layers.{i}.norm3",
    "decoder.layers.{i}.mlp.fc1": "decode.backbone.layers.{i}.linear1",
    "decoder.layers.{i}.mlp.fc2": "decode.backbone.layers.{i}.linear2",
    "backbone.vit": OFFICIAL_BACKBONE_PREFIX.removeprefix(OFFICIAL_PREFIX).rstrip("."),
}


def official_key_map(model: nn.Module, method_names: dict[str, str]) -> dict[str, str]:
    """Every official state-dict key (with "m.") that this model can load -> our state-dict key.

    `method_names` maps the method's own parts (our prefix -> the release's, after "m."), beside the shared
    OFFICIAL_NAMES; a model key that neither names (a part the release lacks) raises WeightsMismatchError.
    """
    names = {**OFFICIAL_NAMES, **method_names}
    key_map, unnamed = {}, []
    for ours in model.state_dict():
        official = _official_name(ours, names)
        if official is None:
            unnamed.append(ours)
        else:
            key_map[OFFICIAL_PREFIX + official] = ours
    if unnamed:  # e.g. learned queries (model.initializer=learned): the release has no weights for them
        raise WeightsMismatchError(
            f"the official release has no weights for {', '.join(unnamed)}, so it cannot fill this model; load it "
            "with the config of its method and dataset (configs/), whose model the release trained"
        )
    return key_map


def _official_name(ours: str, names: dict[str, str]) -> str | None:
    parts = ours.split(".")
    index = next((p for p in parts if p.isdigit()), None) if ours.startswith("decoder.layers.") else None
    for our_prefix, official_prefix in names.items():
        if index is not None:
            our_prefix, official_prefix = our_prefix.format(i=index), official_prefix.format(i=index)
        if ours == our_prefix or ours.startswith(our_prefix + "."):
            suffix = ours[len(our_prefix) :]
            if official_prefix.endswith("_weight") and suffix:  # packed MHA projection: a bare tensor
                return official_prefix if suffix == ".weight" else None
            return official_prefix + suffix
    return None


def load_with_key_map(
    model: nn.Module,
    source: str | Path | dict[str, torch.Tensor],
    key_map: dict[str, str],
    *,
    release: str,
    optional: tuple[str, ...] = (),
) -> None:
    """Load release keys into `model` through `key_map` (release key -> ours), checking every key and shape.

    The backbone's keys, and the `optional` ones, may be absent: those entries keep their values.
    """
    option = f"the checkpoint path (is it a {release} release checkpoint, and the config of that method?)"
    if isinstance(source, (str, Path)):
        state = read_state_dict(source, option=option)
    else:
        state = unwrap_state_dict(source)
    if not any(k.startswith(OFFICIAL_BACKBONE_PREFIX) for k in state):
        key_map = {k: v for k, v in key_map.items() if not k.startswith(OFFICIAL_BACKBONE_PREFIX)}
    key_map = {k: v for k, v in key_map.items() if k in state or k not in optional}
    ours = model.state_dict()
    expected = {official: ours[name] for official, name in key_map.items()}
    check_state_dict(expected, state, what="checkpoint", option=option)
    model.load_state_dict({key_map[k]: v for k, v in state.items()}, strict=False)


def is_official_state_dict(state: dict) -> bool:
    """Whether a (possibly wrapped) state dict holds release keys ("m."-prefixed)."""
    return any(str(key).startswith(OFFICIAL_PREFIX) for key in unwrap_state_dict(state))
