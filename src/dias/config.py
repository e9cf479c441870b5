"""Typed run configuration: YAML files (with bases), dotted `key=value` overrides, validation, saving.

Only a method's `build_model(cfg)` and the commands read a config; modules take plain arguments. The schema
(sections, rules, derived values) lives in dias.schema, each method's section in its folder.

    cfg = load_config("configs/dias-coco.yaml", ["model.num_slots=11", "train.seed=43"])
    save_config(cfg, run_dir / "config.yaml")

What a run uses, lowest first: the schema's defaults, the defaults of the method that model.method names,
the config file's bases in order, the file itself, the `key=value` overrides.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from dias.io import atomic_write_bytes
from dias.schema import (
    DEFAULT_METHOD,
    RULE,
    Config,
    ConfigError,
    DecoderConfig,
    MethodConfig,
    Misfit,
    TransformerDecoderConfig,
    dataset_misfits,
)
from dias.version import __version__

CONFIG_FILE_NAME = "config.yaml"
BASE_KEY = "base"  # a config file's base file or list of files (relative to it); the file holds its differences
VERSION_KEY = "dias_version"  # the version of dias that saved a config (save_config writes it first)
YAML_MERGE_TAG = "tag:yaml.org,2002:merge"  # the `<<: *anchor` key
YAML_STRING_NAME = "<unicode string>"  # PyYAML's name for text parsed from a string, not a file


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or the defaults when `path` is None) and apply `key=value` overrides.

    A file may name base files (`base: dias-coco.yaml`, or a list merged in order, relative to the file)
    and hold only what differs from them: sections are merged key by key, except a role section that names
    another class (`name:`), which replaces the earlier section. The method model.method names adds its
    defaults beneath all of it, so `model.method=smoothsa` alone switches a DIAS config to SmoothSA.
    """
    raw = _read_with_bases(Path(path), ()) if path is not None else {}
    return from_dict(apply_overrides(raw, overrides))


def _read_with_bases(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    if not path.is_file():
        where = f" (the base of {chain[-1]})" if chain else ""
        raise ConfigError(f"config file not found: {path}{where}")
    if path.resolve() in chain:
        raise ConfigError(f"{path}: its bases form a loop ({' -> '.join(str(p) for p in (*chain, path))})")
    with open(path, encoding="utf-8") as f:
        try:
            raw = yaml.load(f, Loader=UniqueKeyLoader)  # a SafeLoader: no Python objects
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}{_yaml_position(exc)}: not valid YAML: {_yaml_problem(exc)}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{path}: byte {exc.start} is not UTF-8 ({exc.object[exc.start : exc.start + 1]!r}); "
                "save the file as UTF-8"
            ) from None
        except ValueError as exc:  # a YAML value Python cannot hold, e.g. an integer of more than 4300 digits
            raise ConfigError(f"{path}: a value cannot be read: {_unreadable(exc)}") from None
    if raw is None:  # an empty file, or comments only: a mistake, not a wish for the defaults
        raise ConfigError(
            f"config file {path} is empty; write at least one section into it, "
            "or leave out --config for the built-in defaults"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    bases = raw.pop(BASE_KEY, [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(base, str) for base in bases):
        raise ConfigError(f"{path}: config key {BASE_KEY} must name a file or a list of files, got {bases!r}")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = merge_config(merged, _read_with_bases(path.parent / base, (*chain, path.resolve())))
    return merge_config(merged, raw)


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML would keep the last silently)."""

    def construct_document(self, node: yaml.Node) -> Any:
        self._root = node
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == YAML_MERGE_TAG:
                continue  # SafeLoader merges `<<:` keys (the mapping's own keys win) and refuses unhashable ones
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in lines:
                where = ".".join(str(part) for part in (*_path_to(self._root, node), key))
                if key_node.start_mark.name == YAML_STRING_NAME:  # an override's inline mapping
                    raise ConfigError(f"key {where} appears twice; keep one")
                raise ConfigError(
                    f"{key_node.start_mark.name}: key {where} appears twice, on lines {lines[key]} and {line}; keep one"
                )
            lines[key] = line
        return super().construct_mapping(node, deep=deep)


def _path_to(root: yaml.Node, node: yaml.Node) -> list[Any]:
    """The keys that lead from the document's root to `node`, e.g. ["model", "decoder"]."""
    if root is node:
        return []
    if isinstance(root, yaml.MappingNode):
        for key_node, value_node in root.value:
            if _contains(value_node, node):
                return [key_node.value, *_path_to(value_node, node)]
    return []


def _contains(root: yaml.Node, node: yaml.Node) -> bool:
    if root is node:
        return True
    return isinstance(root, yaml.MappingNode) and any(_contains(value, node) for _, value in root.value)


def merge_config(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` merged in, key by key; a section naming another class (`name:`) replaces base's."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        old = merged.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and value.get("name", old.get("name")) == old.get("name"):
            merged[key] = merge_config(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _yaml_position(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return "" if mark is None else f", line {mark.line + 1}, column {mark.column + 1}"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    return f"{problem}; fix the file" if problem else f"{exc}"


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """A copy of nested plain config data with dotted `key=value` overrides applied."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(raw, key, value)
    return raw


def from_dict(raw: dict[str, Any], *, version: str | None = None) -> Config:
    """Build a validated Config from nested plain data; unknown keys and wrong types raise ConfigError.

    `version` is the dias version that saved `raw` (a checkpoint's or export's `dias_version`); a saved
    config.yaml names it under VERSION_KEY. Data saved by an older layout is upgraded first (upgrade_layout).
    The method that model.method names adds its defaults beneath `raw`; then every setting the method cannot
    run (a dataset of the other kind, its own misfits, keys of another method's section) is refused at once,
    so that switching model.method names all the keys that must change in one line.
    """
    # imported here so that `import dias` and `dias --help` stay quick: the methods import torch and timm
    from dias.methods import METHODS

    raw = dict(raw)
    version = raw.pop(VERSION_KEY, version)
    raw = upgrade_layout(raw, version)
    name = _method_name(raw)
    if name not in METHODS:
        hint = _did_you_mean("model.method", name, tuple(METHODS))
        raise ConfigError(
            f"config key model.method.name = {name!r} is not one of {', '.join(map(repr, METHODS))}{hint}"
        )
    method = METHODS[name]
    beneath = merge_config({"model": {"method": {"name": name}}}, method.defaults)
    merged, foreign = _without_foreign_method_keys(merge_config(beneath, raw), method.config)
    cfg = _build(Config, merged, prefix="")
    misfits = [*dataset_misfits(cfg), *method.misfits(cfg), *foreign]
    if misfits:
        listed = "; ".join(f"{misfit.setting} ({misfit.fix})" for misfit in misfits)
        raise ConfigError(
            f"model.method.name = {name!r} does not fit this config: {listed}; or start from {method.start_config}"
        )
    return cfg


def _without_foreign_method_keys(
    raw: dict[str, Any], section: type[MethodConfig]
) -> tuple[dict[str, Any], list[Misfit]]:
    """`raw` less the keys of its model.method section that only another method's section holds (left by a
    switch such as `model.method.name=smoothsa` on a DIAS config), and a misfit naming them; a key no
    method holds stays, for the unknown-key refusal and its "did you mean"."""
    from dias.methods import METHODS

    given = raw["model"]["method"] if isinstance(raw.get("model"), dict) else None
    if not isinstance(given, dict):
        return raw, []
    own = {f.name for f in dataclasses.fields(section)}
    others = {f.name for method in METHODS.values() for f in dataclasses.fields(method.config)} - own
    foreign = [key for key in given if key in others]
    if not foreign:
        return raw, []
    raw = copy.deepcopy(raw)
    raw["model"]["method"] = {key: value for key, value in given.items() if key not in foreign}
    shown = ", ".join(
        f"the section model.method.{key}" if isinstance(given[key], dict) else f"model.method.{key} = {given[key]!r}"
        for key in foreign
    )
    name = given["name"]
    fix = (
        f"not keys of {name}: remove them, or switch with model.method={name} alone, which replaces the whole "
        f"section by {name}'s defaults"
    )
    return raw, [Misfit(shown, fix)]


def _method_name(raw: dict[str, Any]) -> Any:
    """The method model.method names in plain config data: a bare name or a section's `name`."""
    section = (raw.get("model") or {}).get("method", DEFAULT_METHOD) if isinstance(raw.get("model"), dict) else None
    return section.get("name", DEFAULT_METHOD) if isinstance(section, dict) else (section or DEFAULT_METHOD)


# The layout of dias 0.1 (every config saved without a dias_version): upgraded until dias 0.3, which drops it.
LEGACY_VERSION, LEGACY_LAYOUT_READ_UNTIL = "0.1", "0.3"
LEGACY_SLOT_ATTENTION_KEYS = {"num_iters": "num_iters", "slot_mlp_dim": "mlp_dim"}  # early 0.1 model.* names


def upgrade_layout(raw: dict[str, Any], version: str | None) -> dict[str, Any]:
    """Plain config data saved by dias 0.1 (runs, checkpoints, exports, the bundled demo model) in the current
    layout; data of any later version, or of no version (a config file a user writes), is returned as it is.

    dias 0.1 kept the objective's keys in a top-level `loss` section, the re-initialization in model.reinit
    and the method as a bare name (now all in the section model.method); early 0.1 runs also wrote
    model.num_iters and model.slot_mlp_dim (now model.slot_attention.*) and every decoder's keys in one section.
    A saved 0.1 config.yaml names no version: its `loss` section beside a bare method name tells it.
    """
    model = raw.get("model")
    if version is None and "loss" in raw and not (isinstance(model, dict) and isinstance(model.get("method"), dict)):
        version = LEGACY_VERSION
    if version is None or _release(version) >= _release("0.2"):
        return raw
    raw = copy.deepcopy(raw)
    model = raw.setdefault("model", {})
    section = model.setdefault("slot_attention", {})
    for old, new in LEGACY_SLOT_ATTENTION_KEYS.items():
        if old in model:
            section.setdefault(new, model.pop(old))  # a value given in the current layout wins
    decoder = model.get("decoder")
    if isinstance(decoder, dict):
        cls = _tagged_class(DecoderConfig, decoder.get("name", TransformerDecoderConfig.name), "model.decoder.")
        model["decoder"] = {k: v for k, v in decoder.items() if k in {f.name for f in dataclasses.fields(cls)}}
    method = {"name": model.get("method", DEFAULT_METHOD), **(raw.pop("loss", None) or {})}
    reinit = model.pop("reinit", None)
    if reinit is not None and (method["name"] == DEFAULT_METHOD or reinit.get("enabled")):
        method["reinit"] = reinit  # another method's disabled reinit section was a default, not a choice
    model["method"] = method
    return raw


def _release(version: str) -> tuple[int, ...]:
    """(major, minor) of a version string such as "0.1.0"."""
    return tuple(int(part) for part in version.split(".")[:2])


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain data (lists for tuples) that `from_dict` and YAML both accept."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def flatten(plain: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested plain config data -> {"section.key": value}."""
    flat = {}
    for key, value in plain.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically, with the version of dias that wrote it first."""
    text = yaml.safe_dump({VERSION_KEY: __version__, **to_dict(cfg)}, sort_keys=False)
    atomic_write_bytes(Path(path), text.encode("utf-8"))


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} is not of the form section.key=value")
    try:
        value = yaml.load(text, Loader=UniqueKeyLoader) if text else None  # an inline mapping's keys once each
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: e.g. an integer of more than 4300 digits
        shown = item if len(item) <= 80 else item[:60] + f"... ({len(item)} characters)"
        raise ConfigError(f"override {shown!r}: cannot parse value: {_unreadable(exc)}") from None
    return key.strip(), value


def _unreadable(exc: Exception) -> str:
    """Why a YAML value cannot be read, in one line (Python's advice to raise its digit limit left out)."""
    if "integer string conversion" in str(exc):
        return f"an integer of more than {sys.get_int_max_str_digits()} digits, far beyond any config value"
    return " ".join(str(exc).split())


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if isinstance(child, str):  # a role section given by its bare name: that class, with its defaults
            child = node[part] = {"name": child}
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {part} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """`cls` from `raw`, whose keys sit under `prefix` (for the messages)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = list(fields)
    for key in raw:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            of = f" (of {prefix}name={raw['name']})" if "name" in raw and "name" in names else ""
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; valid keys{of}: {', '.join(names)}"
            raise ConfigError(f"unknown config key {prefix}{key}{hint}")
    kwargs = {}
    for name in names:
        kind = hints[name]
        if name not in raw:
            continue
        if _is_role(kind):  # a role section: its `name` picks the class, whose keys it holds
            value = {"name": raw[name]} if isinstance(raw[name], str) else raw[name]  # a bare name: the defaults
            default_name = _default(cls, name).name
            tag = value.get("name", default_name) if isinstance(value, dict) else default_name
            kwargs[name] = _build(_tagged_class(kind, tag, f"{prefix}{name}."), value, f"{prefix}{name}.")
        elif dataclasses.is_dataclass(kind):
            kwargs[name] = _build(kind, raw[name], f"{prefix}{name}.")
        else:
            key, rule = f"{prefix}{name}", fields[name].metadata.get(RULE)
            fix = f"; e.g. {key}={_as_override(_default(cls, name))}"  # the default: a value that loads
            value = kwargs[name] = _coerce(raw[name], kind, key, fix)
            if rule is not None and value is not None and not rule.holds(value):
                given = _number(raw[name])
                shown = repr(given)
                if isinstance(given, float) and isinstance(value, int):
                    shown += f" (a whole number, read as {value})"
                hint = _did_you_mean(key, raw[name], rule.examples) or fix
                raise ConfigError(f"config key {key} = {shown} is invalid: it must be {rule.text}{hint}")
    return cls(**kwargs)


def _as_override(value: Any) -> str:
    """The text after `key=` that gives `value`, with no space a shell would split: 0.0002, [0.9,0.999], null."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _default(cls: type, name: str) -> Any:
    """The default value of field `name` of dataclass `cls`."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _is_role(kind: Any) -> bool:
    """Whether a section of type `kind` is a role: one of several classes, picked by its `name`."""
    if kind is MethodConfig:
        return True
    args = typing.get_args(kind)
    return typing.get_origin(kind) in (Union, types.UnionType) and all(dataclasses.is_dataclass(a) for a in args)


def _role_classes(kind: Any) -> list[type]:
    """The classes a role section can be: a union's members, or the registered methods' sections."""
    if kind is MethodConfig:
        from dias.methods import METHODS

        return [method.config for method in METHODS.values()]
    return list(typing.get_args(kind))


def _tagged_class(kind: Any, tag: Any, prefix: str) -> type:
    """The class of role `kind` whose `name` is `tag`; another tag raises ConfigError."""
    classes = {typing.get_args(typing.get_type_hints(c)["name"])[0]: c for c in _role_classes(kind)}
    if tag not in classes:
        choices = ", ".join(repr(c) for c in classes)
        hint = _did_you_mean(f"{prefix}name", tag, tuple(classes))
        raise ConfigError(f"config key {prefix}name = {tag!r} is not one of {choices}{hint}")
    return classes[tag]


def _did_you_mean(key: str, value: Any, valid: tuple[Any, ...]) -> str:
    """ "; did you mean KEY=VALUE?" with the valid value closest to `value`, or "" when none is close."""
    close = difflib.get_close_matches(str(value), [str(v) for v in valid], n=1, cutoff=0.5)
    return f"; did you mean {key}={close[0]}?" if close else ""


def _coerce(value: Any, kind: Any, key: str, fix: str) -> Any:
    """`value` as type `kind`; a refusal ends with `fix`, a "; e.g. KEY=VALUE" that loads."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key, fix)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            hint = _did_you_mean(key, value, args) or fix
            raise ConfigError(f"config key {key} = {value!r} is not one of {choices}{hint}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"config key {key} expects a list of {len(args)} values, got {value!r}{fix}")
        return tuple(_coerce(v, a, f"{key}[{i}]", fix) for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key} expects true or false, got {value!r}{fix}")
        return value
    if kind is int:
        number = _number(value)  # 1e7 and 1000.0 are integers written as floats: taken, then range-checked
        if isinstance(number, float) and number.is_integer():
            return int(number)
        if isinstance(number, bool) or not isinstance(number, int):
            raise ConfigError(
                f"config key {key} = {number!r} is not an integer (a float is taken only when whole, like 2e4){fix}"
            )
        return number
    if kind is float:
        value = _number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key} expects a number, got {value!r}{fix}")
        if not math.isfinite(value):
            raise ConfigError(f"config key {key} = {value!r} is not a finite number{fix}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key} expects a string, got {value!r}{fix}")
        return value
    raise TypeError(f"unsupported config type {kind} for {key}")


def _number(value: Any) -> Any:
    """A string that spells a number as a float (YAML 1.1 reads "2e-4", with no dot, as a string)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value
