"""One device and precision rule: `auto` picks CUDA when present, and fp16 off CUDA falls back once, the same way."""

import logging

import pytest
import torch

import dias.runtime.device as device_module
from dias.cli import main
from dias.runtime.device import DeviceError, Precision, inference_precision, resolve_device, resolve_precision


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(device_module, "_warned", set())


def test_auto_is_cuda_when_present_else_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("auto", local_rank=3) == torch.device("cuda", 3)  # torchrun: this process's GPU
    assert resolve_device("cuda:1", local_rank=3) == torch.device("cuda", 1)


def test_a_missing_gpu_or_an_unknown_device_is_a_user_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA GPU is visible; pass --device auto or cpu$"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match=r"pass --device auto or cpu \(or the override train.device=cpu\)"):
        resolve_device("cuda", key="train.device")
    with pytest.raises(DeviceError, match="unknown device 'gpu'"):
        resolve_device("gpu")


@pytest.mark.parametrize(("fast_bf16", "expected"), [(True, "bf16"), (False, "fp32")])
def test_fp16_off_cuda_falls_back_by_the_cpu_with_one_warning(monkeypatch, caplog, fast_bf16, expected):
    monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda: fast_bf16)
    with caplog.at_level(logging.WARNING, logger="dias.runtime.device"):
        precisions = [resolve_precision("fp16", torch.device("cpu")) for _ in range(3)]
    assert {p.name for p in precisions} == {expected} and not any(p.scaled for p in precisions)
    assert len(caplog.records) == 1 and f"running {expected} on cpu" in caplog.text
    with caplog.at_level(logging.WARNING, logger="dias.runtime.device"):
        resolve_precision("fp16", torch.device("cpu"), key="eval.precision")
    assert len(caplog.records) == 2 and "eval.precision=fp16" in caplog.records[-1].getMessage()


def test_fp16_on_cuda_is_scaled_and_explicit_choices_are_kept(monkeypatch):
    cuda = resolve_precision("fp16", torch.device("cuda", 0))
    assert (cuda.name, cuda.dtype, cuda.scaled) == ("fp16", torch.float16, True)
    monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda: False)
    assert resolve_precision("bf16", torch.device("cpu")).name == "bf16"  # asked for: honoured
    assert resolve_precision("fp32", torch.device("cpu")).name == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    with pytest.raises(DeviceError, match="does not support bf16"):
        resolve_precision("bf16", torch.device("cuda", 0))


@pytest.mark.parametrize(
    ("device", "fast_bf16", "gpu_bf16", "expected"),
    [("cpu", True, False, "bf16"), ("cpu", False, False, "fp32"), ("cuda", False, True, "bf16"),
     ("cuda", False, False, "fp16"), ("mps", True, False, "fp32")],
)  # fmt: skip
def test_auto_inference_precision_is_the_native_low_precision(monkeypatch, device, fast_bf16, gpu_bf16, expected):
    monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda: fast_bf16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: gpu_bf16)
    assert inference_precision("auto", torch.device(device)).name == expected
    assert inference_precision("fp32", torch.device(device)).name == "fp32"  # asked for: honoured


@pytest.mark.parametrize(
    ("device", "fast_bf16", "expected"),
    [("cpu", True, "bf16"), ("cpu", False, "fp32"), ("cuda", True, "fp32"), ("mps", True, "fp32")],
)
def test_auto_training_precision_is_bf16_only_where_it_was_measured_faster(monkeypatch, device, fast_bf16, expected):
    monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda: fast_bf16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    precision = resolve_precision("auto", torch.device(device))
    assert (precision.name, precision.scaled) == (expected, False)
    with pytest.raises(DeviceError, match="auto, fp32, bf16 or fp16"):
        resolve_precision("fp8", torch.device(device))


def test_autocast_sets_the_dtype_and_fp32_runs_without_it():
    with Precision("bf16", "cpu").autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with Precision("fp32", "cpu").autocast():
        assert not torch.is_autocast_enabled("cpu")


def test_every_command_defaults_to_auto(monkeypatch):
    import dias.cli as cli

    parser = cli._build_parser()
    assert parser.parse_args(["infer", "x.png", "--checkpoint", "c", "--out", "o"]).device == "auto"
    assert parser.parse_args(["features", "--config", "c", "--out", "o"]).device == "auto"
    for argv, key in (
        (["train", "--config", "c"], "train.device"),
        (["eval", "--checkpoint", "c"], "eval.device"),
        (["doctor"], "train.device"),
    ):
        args = parser.parse_args(argv)
        assert cli._overrides(args) == list(args.overrides)  # the config's key decides; its default is auto
        args = parser.parse_args([*argv, "--device", "cpu", "a.b=1"])
        assert cli._overrides(args) == ["a.b=1", f"{key}=cpu"]


def test_doctor_names_a_missing_gpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["doctor", "--device", "cuda", "--no-estimate", "data.root=/nonexistent"]) == 1
    out = capsys.readouterr().out
    assert "FAIL] device" in out and "no CUDA GPU is visible" in out


def test_loaders_pin_memory_only_for_cuda(synthetic_root, small_demo_config):
    from dias.runtime.distributed import DistInfo
    from dias.train.loaders import build_loaders

    cfg = small_demo_config(f"data.root={synthetic_root}", "data.num_workers=0", "data.batch_size=4")
    for device, pinned in ((torch.device("cpu"), False), (torch.device("cuda", 0), True)):
        train_loader, _, val_loader = build_loaders(cfg, DistInfo(0, 1, device))
        assert train_loader.pin_memory is pinned and val_loader.pin_memory is pinned


def test_configs_take_auto_for_both_precisions():
    from dias.config import load_config

    cfg = load_config("configs/demo.yaml", ["train.precision=auto", "eval.precision=auto"])
    assert (cfg.train.precision, cfg.eval.precision) == ("auto", "auto")


@pytest.mark.parametrize(
    ("cap", "allowed"),
    [
        (None, True),
        ("ALL", True),
        ("avx512_core_amx", True),
        ("AVX512_CORE_BF16", True),
        ("AVX10_1_512", True),
        ("AVX512_CORE", False),
        ("AVX2", False),
        ("avx2_vnni", False),
    ],
)
def test_a_onednn_instruction_cap_below_bf16_makes_bf16_slow(monkeypatch, cap, allowed):
    """A benchmark standing in for a CPU without bf16 instructions caps oneDNN; auto must then pick fp32."""
    for name in device_module.ONEDNN_ISA_CAPS:
        monkeypatch.delenv(name, raising=False)
    if cap is not None:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    monkeypatch.setattr(device_module, "cpu_bf16_speedup", lambda: 4.0)  # what AMX gives; the cap alone decides
    assert device_module.onednn_allows_bf16() is allowed
    assert device_module.cpu_has_fast_bf16() is allowed
    assert resolve_precision("auto", torch.device("cpu")).name == ("bf16" if allowed else "fp32")


@pytest.mark.parametrize(("speedup", "expected"), [(2.44, "bf16"), (1.3, "bf16"), (1.1, "fp32"), (0.78, "fp32")])
def test_bf16_instructions_count_only_where_the_probe_finds_bf16_faster(monkeypatch, speedup, expected):
    """AVX-512 BF16 without AMX ran the probe at 0.78x fp32 on one Xeon: the instructions are not enough."""
    monkeypatch.setattr(device_module, "cpu_has_bf16_instructions", lambda: True)
    monkeypatch.setattr(device_module, "cpu_bf16_speedup", lambda: speedup)
    assert resolve_precision("auto", torch.device("cpu")).name == expected
    assert inference_precision("auto", torch.device("cpu")).name == expected
    monkeypatch.setattr(device_module, "cpu_has_bf16_instructions", lambda: False)
    monkeypatch.setattr(device_module, "cpu_bf16_speedup", lambda: pytest.fail("probed without bf16 instructions"))
    assert resolve_precision("auto", torch.device("cpu")).name == "fp32"


def test_the_bf16_probe_measures_once_and_leaves_the_random_state_alone():
    device_module.cpu_bf16_speedup.cache_clear()
    state = torch.random.get_rng_state()
    with torch.no_grad():  # as evaluation calls it: the probe still runs its backward
        speedup = device_module.cpu_bf16_speedup()
    assert speedup > 0 and torch.equal(torch.random.get_rng_state(), state)
    assert device_module.cpu_bf16_speedup() == speedup  # cached: one probe per process
