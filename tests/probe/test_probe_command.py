"""`dias probe` end to end: synthetic shapes and a COCO-format tree, both matching modes, the baselines, resume."""

import importlib.util
import json
import re
import signal
from pathlib import Path

import pytest
import torch
from tiny import tiny_config

import dias.commands.probe as probe_module
from dias.cli import main
from dias.commands.probe import MAJORITY, PROBE_FILE, RESULT_FILE, SOURCES, run_probe
from dias.data.convert_clevrtex import prepare_clevrtex
from dias.data.convert_coco import prepare_coco
from dias.errors import MissingFileError
from dias.methods import build_model
from dias.probe.labels import ProbeLabelError
from dias.train.checkpoint import save_checkpoint

TESTS = Path(__file__).resolve().parents[1]
PROBE_RUN = ["probe.total_steps=3", "probe.batch_size=4", "probe.checkpoint_every=2", "eval.batch_size=4"]


@pytest.fixture(scope="module")
def checkpoint(tiny_root, tmp_path_factory):
    """An untrained tiny demo model: the probe protocol does not care whether the slots are any good."""
    cfg = tiny_config(tiny_root)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("probe-model") / "last.pt"
    save_checkpoint(path, build_model(cfg), cfg, step=0)
    return path


def test_probe_on_synthetic_shapes_prints_the_baselines_and_both_modes(checkpoint, tmp_path, capsys):
    results = {}
    for mode, flag in (("uncapped", []), ("capped", ["--official-cap"])):
        out = tmp_path / mode
        args = ["probe", "--checkpoint", str(checkpoint), "--out", str(out), *flag, *PROBE_RUN, "probe.attribute=shape"]
        assert main(args) == 0
        printed = capsys.readouterr().out
        assert "majority class" in printed and "k-means" in printed and "fixed grid" in printed
        assert ("official cap" in printed) is (mode == "capped")
        saved = json.loads((out / RESULT_FILE).read_text())
        assert set(saved["metrics"]) == {*SOURCES, MAJORITY}
        assert set(saved["metrics"]["model"]) == {"top1", "top3", "box_iou", "num_matches"}
        assert saved["card"]["attribute"] == "shape" and saved["card"]["mask_source"] == "attn:-1"
        assert saved["card"]["checkpoint_sha256"] and (out / PROBE_FILE).is_file()
        results[mode] = saved["metrics"]
    for source in SOURCES:
        uncapped, capped = results["uncapped"][source]["num_matches"], results["capped"][source]["num_matches"]
        assert 0 < capped <= uncapped and capped <= 2 * 4  # 4 val images, at most two objects each
    assert results["uncapped"]["model"]["top3"] >= results["uncapped"]["model"]["top1"]
    uncapped = str(tmp_path / "uncapped")
    assert main(["report", uncapped, uncapped, str(tmp_path / "capped"), "--out", str(tmp_path / "summary")]) == 0
    table = (tmp_path / "summary.md").read_text()
    assert "| synthetic shape, model (uncapped) | 1 |" in table  # given twice, counted once
    assert "| synthetic shape, kmeans (official cap) | 1 |" in table and "majority" in table


def test_a_dataset_without_the_attribute_is_one_line_naming_what_it_has(checkpoint, tmp_path, capsys):
    args = ["probe", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "run"), "probe.attribute=material"]
    assert main(args) == 1
    error = capsys.readouterr().err
    assert "no labels for probe.attribute=material" in error and "shape, color" in error
    with pytest.raises(ProbeLabelError):
        run_probe(checkpoint, tmp_path / "run", overrides=["probe.attribute=category"])


def test_resume_continues_the_probe(checkpoint, tmp_path):
    out = tmp_path / "run"
    first = run_probe(checkpoint, out, overrides=[*PROBE_RUN, "probe.attribute=color", "probe.total_steps=2"])
    assert first.step == 2 and first.status == "done"
    resumed = run_probe(
        checkpoint, out, overrides=[*PROBE_RUN, "probe.attribute=color", "probe.total_steps=4"], resume=True
    )
    assert resumed.step == 4 and torch.load(out / PROBE_FILE, weights_only=True)["step"] == 4


def _convert_tests():
    spec = importlib.util.spec_from_file_location("convert_tests", TESTS / "data" / "test_convert.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _make_coco():
    return _convert_tests().make_coco


def test_probe_on_clevrtex_attributes_counts_classes_the_train_split_lacks_as_wrong(tmp_path):
    make_clevrtex, raw, root = _convert_tests().make_clevrtex, tmp_path / "raw", tmp_path / "clevrtex"
    make_clevrtex(raw, "full", 4)
    make_clevrtex(raw, "outd", 2)  # out of distribution: other shapes than full's
    prepare_clevrtex(raw, root, num_workers=1, progress=False)
    cfg = tiny_config(None, f"data.root={root}", "data.name=clevrtex", "model.num_slots=5", "data.batch_size=2")
    save_checkpoint(tmp_path / "last.pt", build_model(cfg), cfg, step=0)
    scores = {}
    for attribute in ("shape", "color"):
        overrides = [*PROBE_RUN, "probe.batch_size=2", "eval.batch_size=2", f"probe.attribute={attribute}"]
        result = run_probe(tmp_path / "last.pt", tmp_path / attribute, overrides=overrides)
        assert result.status == "done" and result.metrics["model"]["num_matches"] >= 1
        scores[attribute] = result.metrics
    assert all(scores["shape"][source]["top3"] == 0 for source in (*SOURCES, MAJORITY))  # no val shape was trained


def test_probe_on_a_coco_format_tree_predicts_category_ids(tmp_path):
    make_coco, raw, root = _make_coco(), tmp_path / "raw", tmp_path / "coco"
    for split in ("train", "val"):
        make_coco(raw, split)
    prepare_coco(raw, root, splits=("train", "val"), num_workers=1, progress=False)
    cfg = tiny_config(None, f"data.root={root}", "data.name=coco", "model.num_slots=3", "data.batch_size=2")
    save_checkpoint(tmp_path / "last.pt", build_model(cfg), cfg, step=0)
    overrides = [*PROBE_RUN, "probe.batch_size=2", "eval.batch_size=2", "probe.attribute=category"]
    result = run_probe(tmp_path / "last.pt", tmp_path / "probe", overrides=overrides)
    assert result.status == "done" and result.metrics["model"]["num_matches"] >= 1
    card = json.loads((tmp_path / "probe" / RESULT_FILE).read_text())["card"]
    assert card["num_classes"] == 91 and card["dataset"] == "coco"


def test_sigterm_saves_the_probe_and_a_resume_finishes_it(checkpoint, tmp_path, monkeypatch):
    real, calls = probe_module._train_step, []

    def step_then_sigterm(*args):
        calls.append(1)
        if len(calls) == 3:  # the first step's three probes are done
            signal.raise_signal(signal.SIGTERM)
        return real(*args)

    monkeypatch.setattr(probe_module, "_train_step", step_then_sigterm)
    out, overrides = tmp_path / "run", [*PROBE_RUN, "probe.attribute=shape"]
    stopped = run_probe(checkpoint, out, overrides=overrides)
    assert stopped.status == "terminated" and stopped.step == 1 and not (out / RESULT_FILE).exists()
    assert torch.load(out / PROBE_FILE, weights_only=True)["step"] == 1
    monkeypatch.setattr(probe_module, "_train_step", real)
    finished = run_probe(checkpoint, out, overrides=overrides, resume=True)
    assert finished.status == "done" and finished.step == 3 and (out / RESULT_FILE).is_file()


def test_a_new_probe_never_replaces_a_probe_run(checkpoint, tmp_path, capsys):
    out = tmp_path / "run"
    run_probe(checkpoint, out, overrides=[*PROBE_RUN, "probe.attribute=shape", "probe.total_steps=1"])
    before = (out / PROBE_FILE).read_bytes()
    args = ["probe", "--checkpoint", str(checkpoint), "--out", str(out), *PROBE_RUN, "probe.attribute=shape"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "already holds a probe run" in err and (out / PROBE_FILE).read_bytes() == before
    suggested = re.search(r"continue it with `dias (.*?)`", err).group(1).split()
    assert main([*suggested, *PROBE_RUN, "probe.attribute=shape", "probe.total_steps=2"]) == 0  # the fix works
    with pytest.raises(MissingFileError, match="no probe.pt in .* to resume"):
        run_probe(checkpoint, tmp_path / "empty", overrides=[*PROBE_RUN, "probe.attribute=shape"], resume=True)
