"""The CPU side of `precision=auto`, measured: under each cap on oneDNN's instructions, what the rule's probe
says, what `auto` picks, and what a training step costs in fp32 and in bf16.

    python benchmarks/precision_rule.py [--caps ALL AVX512_CORE_BF16 AVX512_CORE] [--config configs/dias-coco.yaml]
        [--batch-size 8] [--steps 2] [--rounds 2] [--threads 2] [--out results/precision_rule.md]

On a CPU with bf16 matrix instructions, `auto` trains in bf16 only where a small bf16 MLP step (forward and
backward) runs at least BF16_MIN_SPEEDUP times fp32's (dias.runtime.device.cpu_bf16_speedup): the
instructions alone do not make bf16 faster. oneDNN runs the bf16 matrix products, MKL the fp32 ones, so
capping oneDNN (ONEDNN_MAX_CPU_ISA) stands one CPU in for others: ALL (here, AMX where the CPU has it),
AVX512_CORE_BF16 (AVX-512 BF16 without AMX), AVX512_CORE (AVX-512 without bf16). The fp32 path is the same
under every cap. Each cap's row runs in fresh subprocesses: the probe and `auto`'s choice, then the package's
training step (benchmarks/train_step.py's `dias fp32` and `dias bf16`, features given), the two precisions
alternating over --rounds; medians. "auto is right" when it picks bf16 exactly where the bf16 step is faster.
Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from machine import cpu_name
from timing import without_note

from dias.io import atomic_write_bytes
from dias.runtime.device import BF16_MIN_SPEEDUP

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
CAPS = ("ALL", "AVX512_CORE_BF16", "AVX512_CORE")
PROBE = """
import json, torch
import dias.runtime.device as d
torch.set_num_threads({threads})
instructions = d.cpu_has_bf16_instructions()
speedup = d.cpu_bf16_speedup() if instructions else None
auto = d.resolve_precision("auto", torch.device("cpu")).name
print(json.dumps({{"instructions": instructions, "speedup": speedup, "auto": auto}}))
"""


def run_json(command: list[str], cap: str) -> dict:
    """The last line of a subprocess's output, as JSON, run with oneDNN capped at `cap`."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": cap}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed under ONEDNN_MAX_CPU_ISA={cap}:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--caps", nargs="+", default=list(CAPS), help="values of ONEDNN_MAX_CPU_ISA, one row each")
    parser.add_argument("--config", default=str(REPO / "configs" / "dias-coco.yaml"))
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per subprocess")
    parser.add_argument("--rounds", type=int, default=2, help="subprocesses per precision, alternating")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--note", default="", help="a sentence on the machine's state (e.g. its load)")
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "results" / "precision_rule.md")
    args = parser.parse_args()
    step = [sys.executable, str(BENCHMARKS / "train_step.py"), "--config", args.config, "--steps", str(args.steps)]
    step += [item for override in args.override for item in ("--override", override)]
    step += ["--threads", str(args.threads)]
    rows = []
    for cap in args.caps:
        probe = run_json([sys.executable, "-c", PROBE.format(threads=args.threads)], cap)
        ms: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for _ in range(args.rounds):
            for precision in ms:
                row = run_json([*step, "--child", f"dias {precision}", str(args.batch_size)], cap)
                ms[precision].append(row["ms"])
        fp32, bf16 = (statistics.median(ms[p]) for p in ("fp32", "bf16"))
        right = (probe["auto"] == "bf16") == (bf16 < fp32)
        speedup = "no bf16 instructions" if probe["speedup"] is None else f"{probe['speedup']:.2f}x"
        rows.append(
            f"| {cap} | {speedup} | {probe['auto']} | {fp32:.0f} | {bf16:.0f} | {fp32 / bf16:.2f}x | "
            f"{'yes' if right else '**no**'} |"
        )
        print(rows[-1], flush=True)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        "# `precision=auto` on a CPU: the probe, the choice and the step, under caps on oneDNN's instructions",
        "",
        f"{cpu_name()}, torch {torch.__version__}, {args.threads} threads, {Path(args.config).name}, batch "
        f"{args.batch_size}, features given; {datetime.date.today().isoformat()}; medians of {args.rounds} "
        f"subprocesses x {args.steps} timed steps per precision. Load average at the end: {load}. {args.note}".strip(),
        "",
        f"    {shlex.join(['python', 'benchmarks/precision_rule.py', *without_note(sys.argv[1:])])}",
        "",
        f"The probe is a small MLP's forward and backward, fp32's time over bf16 autocast's; `auto` picks bf16 from "
        f"{BF16_MIN_SPEEDUP:.2f}x (dias.runtime.device). The caps change oneDNN's code paths on this chip, not the "
        "chip: a row stands in for another kind of CPU, it does not measure one.",
        "",
        "| ONEDNN_MAX_CPU_ISA | probe: bf16 MLP vs fp32 | auto picks | fp32 step (ms) | bf16 step (ms) | "
        "bf16 step vs fp32 | auto is right |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    text = "\n".join(lines)
    print(text)
    atomic_write_bytes(args.out, text.encode())


if __name__ == "__main__":
    main()
