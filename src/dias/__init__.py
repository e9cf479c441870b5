"""dias: Slot Attention with Re-Initialization and Self-Distillation (DIAS), complete and tested."""

from dias.config import load_config
from dias.schema import Config, ConfigError
from dias.version import __version__

__all__ = ["Config", "ConfigError", "__version__", "build_model", "load", "load_config", "load_official_weights"]


def __getattr__(name):
    # The model pulls in torch and timm; import it only when asked for.
    if name == "build_model":
        from dias.methods import build_model

        return build_model
    if name == "load_official_weights":
        from dias.methods.dias.official import load_official_weights

        return load_official_weights
    if name == "load":
        from dias.commands.infer import load

        return load
    raise AttributeError(f"module 'dias' has no attribute {name!r}")
