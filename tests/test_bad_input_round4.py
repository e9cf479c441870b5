"""Bad input, round four: each damaged file or contradictory option ends as one clear line, and nothing is lost.

Each test names the fault it guards against; the fix is where the input enters (the reference loader, the
probe's resume, the config schema, the official importer, the Python API).
"""

import errno
import json
import os
import pathlib
import re
import shutil
import signal
import time

import lmdb
import numpy as np
import pytest
import torch
from PIL import Image
from tiny import DEMO_CONFIG, TINY, tiny_config

import dias
import dias.commands.probe as probe_module
import dias.train.loop as loop_module
from dias.cli import main
from dias.commands.probe import PROBE_FILE, RESULT_FILE, run_probe
from dias.config import load_config
from dias.data.records import HEADER_KEY, CorruptSplitError, LmdbWriter, load_header, split_path
from dias.demo.reference import WEIGHTS_FILE_NAME, bundled_reference_dir, load_reference
from dias.demo.run import ensure_data
from dias.errors import UsageError
from dias.io import WeightsMismatchError
from dias.methods import METHODS, build_model
from dias.methods.dias.official import dias_official_key_map, load_official_weights
from dias.modules.backbone import ViTBackbone
from dias.schema import ConfigError
from dias.train.checkpoint import save_checkpoint
from dias.train.log import METRICS_FILE_NAME, MetricsLogError, read_metrics
from dias.train.loop import train


@pytest.fixture
def reference_copy(tmp_path):
    """A copy of the bundled demo reference, to damage."""
    copy = tmp_path / "reference"
    shutil.copytree(bundled_reference_dir(), copy)
    return copy


def _one_line_error(capsys) -> str:
    """The error line a command printed last (after any log or progress lines); there is no traceback."""
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1] if err.strip() else ""
    assert last.startswith("dias: error: ") and "Traceback" not in err, err
    return last


# --- the demo reference checks what it vouches for --------------------------------------------------------


def test_bundled_weights_with_flipped_bytes_are_refused(reference_copy, tmp_path, capsys):
    with open(reference_copy / WEIGHTS_FILE_NAME, "r+b") as f:
        f.seek(700_000)
        f.write(b"\x7f" * 16)
    args = ["demo", "--eval-only", "--reference", str(reference_copy), "--out", str(tmp_path / "out")]
    assert main(args) == 1
    assert "SHA-256" in _one_line_error(capsys)
    assert not (tmp_path / "out" / "bundled").exists()  # nothing scored


def test_the_bundled_reference_loads_with_its_weights_checked():
    assert load_reference().weights.is_file()


@pytest.mark.parametrize("name", ["../../../../etc/passwd", "/etc/passwd", "..", "sub/log.jsonl"])
def test_a_card_log_name_outside_the_reference_folder_is_refused(reference_copy, tmp_path, capsys, name):
    card_path = reference_copy / "card.json"
    card = json.loads(card_path.read_text())
    card["runs"][1]["log"] = name
    card_path.write_text(json.dumps(card))
    args = ["demo", "--train-only", "--reference", str(reference_copy), "--out", str(tmp_path / "out")]
    assert main(args) == 1
    assert "leads out of that folder" in _one_line_error(capsys)


def test_a_card_log_symlinked_out_of_the_reference_folder_is_refused(reference_copy, tmp_path, capsys):
    log = reference_copy / "log-seed43.jsonl"
    log.unlink()
    log.symlink_to("/etc/passwd")
    assert main(["demo", "--train-only", "--reference", str(reference_copy), "--out", str(tmp_path / "out")]) == 1
    assert "leads out of that folder" in _one_line_error(capsys)


def test_a_damaged_reference_log_or_card_is_one_line(reference_copy, tmp_path, capsys):
    args = ["demo", "--train-only", "--reference", str(reference_copy), "--out", str(tmp_path / "out")]
    with open(reference_copy / "log-seed43.jsonl", "a") as f:
        f.write('{"step": 100, "loss": ')
    assert main(args) == 1
    assert "log-seed43.jsonl is damaged at line" in _one_line_error(capsys)
    (reference_copy / "card.json").write_text('{"runs": 3')
    assert main(args) == 1
    assert "card.json is damaged" in _one_line_error(capsys)
    (reference_copy / "card.json").write_text('{"runs": [{"seed": 1}]}')
    assert main(args) == 1
    assert "card.json is damaged" in _one_line_error(capsys)


# --- the probe resumes only what it started -----------------------------------------------------------------

PROBE_RUN = ["probe.total_steps=2", "probe.batch_size=4", "probe.checkpoint_every=1", "eval.batch_size=4"]


@pytest.fixture(scope="module")
def two_models(tiny_root, tmp_path_factory):
    """Two untrained tiny models, DIAS and SmoothSA, as checkpoints."""
    folder = tmp_path_factory.mktemp("probe-models")
    paths = []
    for name, overrides in (("dias", []), ("smoothsa", ["model.method=smoothsa", "model.initializer=preheated"])):
        cfg = tiny_config(tiny_root, *overrides)
        torch.manual_seed(0)
        paths.append(folder / f"{name}.pt")
        save_checkpoint(paths[-1], build_model(cfg), cfg, step=0)
    return paths


def test_probe_resume_on_another_model_is_refused_and_keeps_the_run(two_models, tmp_path, capsys):
    dias_model, smoothsa_model = two_models
    out = tmp_path / "probe"
    args = ["probe", "--out", str(out), *PROBE_RUN, "probe.attribute=shape"]
    assert main([args[0], "--checkpoint", str(dias_model), *args[1:]]) == 0
    before = {name: (out / name).read_bytes() for name in (PROBE_FILE, RESULT_FILE)}
    capsys.readouterr()
    assert main([args[0], "--checkpoint", str(smoothsa_model), *args[1:], "--resume"]) == 1
    assert "another model" in _one_line_error(capsys)
    assert {name: (out / name).read_bytes() for name in before} == before  # metrics.json not replaced


def test_probe_resume_with_another_attribute_is_refused(two_models, tmp_path, capsys):
    out = tmp_path / "probe"
    args = ["probe", "--checkpoint", str(two_models[0]), "--out", str(out), *PROBE_RUN]
    assert main([*args, "probe.attribute=shape"]) == 0
    capsys.readouterr()
    assert main([*args, "probe.attribute=color", "--resume"]) == 1
    assert "probe.attribute='shape', not 'color'" in _one_line_error(capsys)
    assert main([*args, "probe.attribute=shape", "probe.total_steps=3", "--resume"]) == 0  # the same one goes on


def test_probe_mask_source_is_checked_at_config_load(tiny_root):
    with pytest.raises(ConfigError, match="probe.mask_source = 'attn:9' is invalid.*probe.mask_source=attn:"):
        tiny_config(tiny_root, "probe.mask_source=attn:9")


@pytest.mark.parametrize("key", ["probe.batch_size", "data.batch_size", "eval.batch_size"])
def test_a_batch_size_beyond_any_memory_is_refused_at_config_load(tiny_root, key):
    with pytest.raises(ConfigError, match=f"{key} = 100000"):
        tiny_config(tiny_root, f"{key}=100000")


def test_probe_on_records_without_the_attribute_is_one_line(two_models, tmp_path, capsys):
    root = tmp_path / "data"
    for split, count in (("train", 4), ("val", 2)):
        with LmdbWriter(split_path(root, split), dataset="synthetic", split=split) as writer:
            for _ in range(count):
                mask = np.zeros((32, 32), np.uint16)
                mask[4:20, 4:20] = 1
                writer.add(np.zeros((32, 32, 3), np.uint8), mask, {"id": "x"})
    args = ["probe", "--checkpoint", str(two_models[0]), "--out", str(tmp_path / "probe"), *PROBE_RUN]
    assert main([*args, f"data.root={root}", "probe.attribute=shape"]) == 1
    assert "has no object shapes (`shapes`)" in _one_line_error(capsys)


def test_sigterm_during_a_long_probe_step_stops_at_once_and_saves(two_models, tmp_path, monkeypatch):
    real, calls = probe_module._matched, []

    def slow_second_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second step's frozen forward, as if its batch took minutes
            signal.raise_signal(signal.SIGTERM)
            time.sleep(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(probe_module, "_matched", slow_second_step)
    out, start = tmp_path / "probe", time.monotonic()
    stopped = run_probe(two_models[0], out, overrides=[*PROBE_RUN, "probe.total_steps=5", "probe.attribute=shape"])
    assert time.monotonic() - start < 30
    assert stopped.status == "terminated" and stopped.step == 1 and not (out / RESULT_FILE).exists()
    assert torch.load(out / PROBE_FILE, weights_only=True)["step"] == 1


# --- config files and overrides ---------------------------------------------------------------------------


def test_a_config_file_with_a_byte_that_is_not_utf8_is_one_line(tmp_path, capsys):
    config = tmp_path / "latin1.yaml"
    config.write_bytes(b"# caf\xe9\ntrain:\n  total_steps: 5\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 1
    assert "is not UTF-8" in _one_line_error(capsys)


def test_an_integer_of_thousands_of_digits_is_one_line(tmp_path, capsys):
    huge = "9" * 5000
    args = ["train", "--config", str(DEMO_CONFIG), "--out", str(tmp_path / "run")]
    assert main([*args, f"train.total_steps={huge}"]) == 1
    assert "more than 4300 digits" in _one_line_error(capsys)
    config = tmp_path / "huge.yaml"
    config.write_text(f"train:\n  total_steps: {huge}\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 1
    assert "more than 4300 digits" in _one_line_error(capsys)


def test_a_key_twice_in_an_inline_mapping_override_is_refused(tiny_root):
    with pytest.raises(ConfigError, match="key total_steps appears twice; keep one"):
        tiny_config(tiny_root, "train={total_steps: 3, total_steps: 4}")


@pytest.mark.parametrize("seed", [2**63, 2**64, -1])
def test_a_seed_beyond_63_bits_is_refused_at_config_load(tiny_root, seed):
    with pytest.raises(ConfigError, match="train.seed .* 63-bit seed"):
        tiny_config(tiny_root, f"train.seed={seed}")


def test_a_file_name_over_255_bytes_is_one_line(tiny_root, tmp_path, capsys):
    out = tmp_path / ("a" * 300)
    args = ["train", "--config", str(DEMO_CONFIG), "--out", str(out), f"data.root={tiny_root}", *TINY]
    assert main([*args, "train.total_steps=1"]) == 1
    assert "File name too long" in _one_line_error(capsys)


CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def _misfit_line(capsys, config, *overrides) -> str:
    """The one line `dias train` refuses a config with, before anything runs."""
    assert main(["train", "--config", str(CONFIGS / config), *overrides]) == 1
    return _one_line_error(capsys)


def test_switching_an_image_config_to_a_video_method_names_every_key_at_once(capsys):
    line = _misfit_line(capsys, "smoothsa-coco.yaml", "model.method=randsfq")
    assert "model.method.name = 'randsfq' does not fit this config: data.name = 'coco' (use a video dataset" in line
    assert "model.initializer.name = 'preheated' (use model.initializer=normal_shared)" in line
    assert line.endswith("or start from configs/randsfq-movi-c.yaml")


def test_switching_a_video_config_to_an_image_method_names_every_key_at_once(capsys):
    line = _misfit_line(capsys, "smoothsa-video-movi-c.yaml", "model.method=dias")
    assert "data.name = 'movi_c' (use an image dataset with its data.root: synthetic, clevrtex, coco or voc)" in line
    assert "model.initializer.name = 'preheated' (use model.initializer=normal_shared or learned)" in line
    assert line.endswith("or start from configs/dias-coco.yaml")


def test_switching_between_video_methods_names_the_initializer_and_the_truncation(capsys):
    line = _misfit_line(capsys, "smoothsa-video-movi-c.yaml", "model.method=randsfq")
    assert "model.initializer.name = 'preheated' (use model.initializer=normal_shared)" in line
    assert "model.slot_attention.truncate = 'bi-level' (use model.slot_attention.truncate=null)" in line
    assert "data.name" not in line


def test_switching_between_image_methods_names_every_conflicting_key(capsys):
    line = _misfit_line(
        capsys, "dias-coco.yaml", "model.initializer=learned", "model.decoder=mlp", "model.method=smoothsa"
    )
    assert "model.initializer.name = 'learned' (use model.initializer=preheated)" in line
    assert "model.decoder.name = 'mlp' (SmoothSA uses the random-order transformer decoder" in line
    assert line.endswith("or start from configs/smoothsa-coco.yaml")
    line = _misfit_line(capsys, "smoothsa-coco.yaml", "model.method=dias", "model.slot_attention.num_iters=1")
    assert "model.initializer.name = 'preheated'" in line and "model.slot_attention.num_iters = 1" in line


def test_renaming_the_method_names_the_keys_its_section_does_not_hold(capsys):
    line = _misfit_line(capsys, "dias-full-coco.yaml", "model.method.name=smoothsa")
    keys = "model.method.distill_form = 'prob', model.method.distill_weight = 1.0, model.method.distill_schedule"
    assert keys in line and "the section model.method.reinit (not keys of smoothsa" in line
    assert "model.method=smoothsa alone" in line
    # a key no method holds is a misspelling, with its "did you mean"
    assert "did you mean model.method.distill_weight?" in _misfit_line(
        capsys, "dias-coco.yaml", "model.method.distill_wieght=1"
    )


@pytest.mark.parametrize("method", ["dias", "smoothsa", "smoothsa_video", "randsfq"])
def test_the_config_a_misfit_offers_to_start_from_is_made_for_that_method(method):
    start = pathlib.Path(METHODS[method].start_config)
    assert start.parent.name == "configs"
    assert load_config(CONFIGS / start.name).model.method.name == method


# --- report ------------------------------------------------------------------------------------------------


def _scored_run(folder, method, ari):
    """A run folder as `dias eval` leaves it: eval-val/metrics.json and the config beside it."""
    scores = {"ari": ari, "fg_ari": 0.5, "mbo": 0.4, "miou": 0.3}
    (folder / "eval-val").mkdir(parents=True)
    card = {"dataset": "synthetic", "split": "val", "mask_source": "decoder"}
    (folder / "eval-val" / "metrics.json").write_text(json.dumps({"metrics": scores, "card": card}))
    (folder / "eval-val" / "config.yaml").write_text(f"model:\n  method:\n    name: {method}\n")
    return folder


def test_report_leaves_out_a_truncated_metrics_json_naming_it(tmp_path, capsys):
    good, bad = _scored_run(tmp_path / "good", "dias", 0.2), _scored_run(tmp_path / "bad", "dias", 0.4)
    text = (bad / "eval-val" / "metrics.json").read_text()
    (bad / "eval-val" / "metrics.json").write_text(text[:30])
    assert main(["report", str(good), str(bad), "--out", str(tmp_path / "summary")]) == 0
    markdown = (tmp_path / "summary.md").read_text()
    assert "| synthetic | 1 | 20.0" in markdown and "Left out, unreadable: " in markdown and "not JSON" in markdown
    assert main(["report", str(bad), "--out", str(tmp_path / "summary")]) == 1
    assert "no readable metrics.json" in _one_line_error(capsys)


@pytest.mark.parametrize(
    "content", ['{"metrics": {"ari": "x"}}', "[1]", '{"metrics": 3}', '{"metrics": {}, "card": 1}']
)
def test_report_refuses_an_odd_metrics_json_in_one_line(tmp_path, capsys, content):
    bad = _scored_run(tmp_path / "bad", "dias", 0.4)
    (bad / "eval-val" / "metrics.json").write_text(content)
    assert main(["report", str(bad), "--out", str(tmp_path / "summary")]) == 1
    _one_line_error(capsys)


def test_report_never_averages_two_methods_into_one_row(tmp_path):
    runs = [_scored_run(tmp_path / "a", "dias", 0.2), _scored_run(tmp_path / "b", "smoothsa", 0.6)]
    assert main(["report", *map(str, runs), "--out", str(tmp_path / "summary")]) == 0
    markdown = (tmp_path / "summary.md").read_text()
    assert "| dias, synthetic | 1 | 20.0" in markdown and "| smoothsa, synthetic | 1 | 60.0" in markdown


# --- the Python API ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def segmenter(two_models):
    return dias.load(two_models[0], device="cpu")


@pytest.mark.parametrize(
    ("images", "words"),
    [
        ([torch.rand(3, 40, 50) * 2 - 1], "float images must be in [0, 1]"),
        ([torch.rand(3, 40, 50) * 255], "float images must be in [0, 1]"),
        ([torch.full((3, 8, 8), float("nan"))], "float images must be in [0, 1]"),
        ([torch.randint(0, 300, (3, 8, 8))], "integer images must be in 0-255"),
        ([], "at least one image"),
        ([torch.zeros(3, 0, 0)], "at least one pixel"),
        ([np.zeros((0, 5, 3), np.uint8)], "at least one pixel"),
    ],
)
def test_segment_refuses_images_it_would_scramble(segmenter, images, words):
    with pytest.raises(UsageError, match=re.escape(words)):
        segmenter.segment(images)


def test_segment_takes_floats_in_zero_one_and_integers_in_0_255(segmenter):
    image = torch.rand(3, 40, 50)
    as_uint8 = segmenter.segment([(image * 255).round().to(torch.uint8)]).masks[0]
    assert torch.equal(segmenter.segment([image]).masks[0], as_uint8)
    assert torch.equal(segmenter.segment([(image * 255).round().long()]).masks[0], as_uint8)


@pytest.mark.parametrize(
    ("inputs", "words"),
    [
        ({"images": torch.rand(2, 3, 32, 32)}, "images must be uint8"),
        ({"images": torch.zeros(2, 32, 32, 3, dtype=torch.uint8)}, "images must be a (B, 3, H, W) uint8 tensor"),
        ({"images": np.zeros((2, 3, 32, 32), np.uint8)}, "images must be a (B, 3, H, W) uint8 tensor"),
        ({"features": torch.rand(2, 16, 5)}, "features must be a (B, N, 64) float tensor"),
    ],
)
def test_model_forward_refuses_wrong_layouts_and_dtypes_in_one_line(segmenter, inputs, words):
    with pytest.raises(UsageError, match=re.escape(words)):
        segmenter.model(**inputs)


def test_official_weights_on_a_model_with_learned_queries_are_refused(tiny_root):
    model = build_model(tiny_config(tiny_root, "model.initializer=normal_shared"))
    release = {official: value + 0.5 for official, value in _official(model).items()}
    learned = build_model(tiny_config(tiny_root, "model.initializer=learned"))
    with pytest.raises(WeightsMismatchError, match="no weights for initializer.queries"):
        load_official_weights(learned, release)


def _official(model):
    ours = model.state_dict()
    return {official: ours[name] for official, name in dias_official_key_map(model).items()}


# --- messages ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "the file is empty or cut short"),
        (b"hello text\n", "it is not a torch file"),
        ("object", "it holds a Python object (pathlib.PosixPath)"),
        ("truncated", "damaged or truncated"),
    ],
)
def test_an_unreadable_checkpoint_says_why_and_never_advises_weights_only_false(
    two_models, tmp_path, capsys, content, words
):
    path = tmp_path / "bad.pt"
    if content == "object":
        torch.save({"model": pathlib.Path("x")}, path)
    elif content == "truncated":
        path.write_bytes(two_models[0].read_bytes()[:1000])
    else:
        path.write_bytes(content)
    assert main(["eval", "--checkpoint", str(path)]) == 1
    error = _one_line_error(capsys)
    assert words in error and "weights_only" not in error


def test_a_run_folder_as_checkpoint_names_its_last_pt(two_models, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(two_models[0], run / "last.pt")
    assert main(["eval", "--checkpoint", str(run)]) == 1
    assert f"pass --checkpoint {run / 'last.pt'}" in _one_line_error(capsys)


def test_a_missing_split_names_what_is_there_and_a_moved_dataset_says_so(two_models, tiny_root, tmp_path, capsys):
    args = ["eval", "--checkpoint", str(two_models[0]), "--out", str(tmp_path / "eval")]
    assert main([*args, "--split", "nope", f"data.root={tiny_root}"]) == 1
    error = _one_line_error(capsys)
    assert "no split 'nope' in" in error and "which holds train, val" in error
    assert main([*args, f"data.root={tmp_path / 'moved'}"]) == 1
    assert "was the dataset moved?" in _one_line_error(capsys)


def test_a_missing_feature_cache_names_dias_features(tiny_root, tmp_path, capsys):
    args = ["train", "--config", str(DEMO_CONFIG), "--out", str(tmp_path / "run"), f"data.root={tiny_root}", *TINY]
    assert main([*args, f"data.features={tmp_path / 'nocache'}"]) == 1
    assert "dias features" in _one_line_error(capsys)


# --- command-line values and damaged inputs -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--minutes", "-1"],
        ["demo", "--minutes", "nan"],
        ["demo", "--minutes", "inf"],
        ["demo", "--minutes", "-0.5"],
        ["eval", "--checkpoint", "x.pt", "--viz", "-1"],
        ["prepare", "synthetic", "--out", "x", "--num-train", "0"],
        ["prepare", "synthetic", "--out", "x", "--num-val", "-1"],
        ["prepare", "synthetic", "--out", "x", "--size", "0"],
        ["prepare", "synthetic-video", "--out", "x", "--num-frames", "0"],
        ["prepare", "synthetic-video", "--out", "x", "--num-val", "-1"],
    ],
)
def test_command_line_values_that_cannot_work_are_refused_by_the_parser(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert f"dias {args[0]}" in capsys.readouterr().err


@pytest.mark.parametrize("count", [-5, "x", None, True])
def test_a_split_header_with_a_bad_record_count_is_one_line(tiny_root, tmp_path, capsys, count):
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    with lmdb.open(str(split_path(root, "val")), subdir=False) as env, env.begin(write=True) as txn:
        header = json.loads(bytes(txn.get(HEADER_KEY)))
        header["num_records"] = count
        txn.put(HEADER_KEY, json.dumps(header).encode())
    with pytest.raises(CorruptSplitError, match="num_records"):
        load_header(split_path(root, "val"))


def test_infer_where_no_input_is_readable_exits_1_with_the_summary(two_models, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "a.png").write_text("not a picture")
    out = tmp_path / "masks"
    assert main(["infer", str(inputs), "--checkpoint", str(two_models[0]), "--out", str(out), "--device", "cpu"]) == 1
    assert "none of the 1 images could be read" in _one_line_error(capsys)
    assert json.loads((out / "summary.json").read_text())["num_skipped"] == 1


def test_infer_into_a_read_only_filesystem_is_one_line(two_models, tmp_path, capsys, monkeypatch):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only)
    args = ["infer", str(image), "--checkpoint", str(two_models[0]), "--out", str(tmp_path / "masks")]
    assert main([*args, "--device", "cpu"]) == 1
    assert "Read-only file system" in _one_line_error(capsys)


def test_a_probe_without_any_match_writes_valid_json_and_exits_1(two_models, tmp_path, capsys):
    out = tmp_path / "probe"
    args = ["probe", "--checkpoint", str(two_models[0]), "--out", str(out), *PROBE_RUN, "probe.attribute=shape"]
    assert main([*args, "probe.iou_threshold=1"]) == 1  # IoU > 1: nothing can match
    assert "no slot of the model matched" in _one_line_error(capsys)
    metrics = json.loads((out / RESULT_FILE).read_text())["metrics"]
    assert metrics["model"]["top1"] is None and metrics["model"]["num_matches"] == 0


def test_a_vit_without_weights_is_the_same_at_every_build():
    first, second = (ViTBackbone("vit_small_patch14_reg4_dinov2", image_size=56) for _ in range(2))
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    "line", [b'{"step": 100, "loss": \n', b'{"step": 1, "lo\xe9ss": 3}\n', b"[1]\n", b'{"loss": 1}\n']
)
def test_a_damaged_metrics_log_line_names_the_fix(tmp_path, line):
    (tmp_path / METRICS_FILE_NAME).write_bytes(b'{"step": 1, "loss": 2.0}\n' + line + b'{"step": 2, "loss": 1.0}\n')
    with pytest.raises(MetricsLogError, match="line 2, is not a JSON record with a step.*delete that line"):
        read_metrics(tmp_path)


def test_evaluating_records_of_another_dataset_than_data_name_warns(two_models, tiny_root, tmp_path, caplog):
    args = ["eval", "--checkpoint", str(two_models[0]), "--out", str(tmp_path / "eval"), f"data.root={tiny_root}"]
    assert main([*args, "data.name=coco"]) == 0
    assert "data.name is coco, but" in caplog.text and "holds synthetic records" in caplog.text


def test_demo_data_of_another_size_or_count_is_named_in_a_warning(tiny_root, caplog):
    ensure_data(tiny_root, load_reference())
    assert "is not the demo's dataset" in caplog.text and "'size': 32" in caplog.text


def test_hand_edits_to_model_keys_are_not_offered_as_resume_overrides(tiny_root, tmp_path, caplog):
    run = tmp_path / "run"
    train(tiny_config(tiny_root, "train.total_steps=1", "train.val_every=100"), run, progress=False)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.0004", "lr: 0.01").replace("slot_dim: 32", "slot_dim: 48"))
    assert main(["train", "--resume", str(run), "train.total_steps=2"]) == 0
    assert f"`dias train --resume {run} optim.lr=0.01`" in caplog.text  # the override that works
    assert "(model.slot_dim=48), but these keys define the model" in caplog.text


def test_a_run_stopped_during_its_final_validation_validates_on_resume(tiny_root, tmp_path, monkeypatch):
    real, calls = loop_module.validate, []

    def sigterm_then_validate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGTERM)  # during the final validation: it stops part-way
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module, "validate", sigterm_then_validate)
    run, cfg = tmp_path / "run", tiny_config(tiny_root, "train.total_steps=2", "train.val_every=100")
    assert train(cfg, run, progress=False).status == "terminated"
    assert not (run / "best.pt").exists()
    resumed = train(cfg, run, resume=True, progress=False)
    assert resumed.status == "done" and resumed.val is not None and (run / "best.pt").is_file()
    assert any("val/fg_ari" in record and record["step"] == 2 for record in read_metrics(run))


def test_a_resumed_probe_is_exactly_the_uninterrupted_one(two_models, tmp_path, monkeypatch):
    overrides = [*PROBE_RUN, "probe.total_steps=6", "probe.checkpoint_every=100", "probe.attribute=shape"]
    whole = run_probe(two_models[0], tmp_path / "whole", overrides=overrides)
    real, calls = probe_module._train_step, []

    def sigterm_in_step_three(*args):
        calls.append(1)
        if len(calls) == 3 * 3:  # the third step's three probes
            signal.raise_signal(signal.SIGTERM)
        return real(*args)

    monkeypatch.setattr(probe_module, "_train_step", sigterm_in_step_three)
    assert run_probe(two_models[0], tmp_path / "split", overrides=overrides).step == 3
    monkeypatch.setattr(probe_module, "_train_step", real)
    resumed = run_probe(two_models[0], tmp_path / "split", overrides=overrides, resume=True)
    assert resumed.metrics == whole.metrics
    saved = [torch.load(tmp_path / run / PROBE_FILE, weights_only=True)["probes"] for run in ("whole", "split")]
    for source in saved[0]:
        for name, value in saved[0][source].items():
            assert torch.equal(value, saved[1][source][name]), (source, name)
