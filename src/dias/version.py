"""The version of dias: the package's (pyproject.toml reads it here) and the one every saved config, checkpoint,
export and eval card records."""

__version__ = "0.2.0"
