"""int8 quality per instruction set: the same trained models, evaluated with onnxruntime on this CPU
and on an emulated one (qemu-user's TCG, e.g. an AVX2-only Haswell without VNNI or AVX-512).

    python -m benchmarks.quantization_isa                       # --small, seed 7, as the tests build
    python -m benchmarks.quantization_isa --cases visual-search --cpu Haswell-v4 --out /tmp/isa.md

Needs `qemu-x86_64` (Debian: apt-get install qemu-user). For each case study it trains once, exports
fp32, and quantizes int8 twice: as `mlsd build` does (7-bit weights) and with 8-bit weights (the
format before). Each variant is evaluated by the case study's own evaluator with its graphs run
natively and under the emulated CPU; the drop vs fp32 is taken on the same CPU, and the quality gate
(paired bootstrap upper bound) as in the build. "self-check" is the largest difference between the
variant's outputs on the build's golden rows here and on the emulated CPU, against the tolerance the
build derives: what a predictor on that CPU would see at load time.

Emulation is slow (TCG runs AVX2 code 20-100x slower), so the full-size models take long; the figures
are arithmetic, not timing: only which kernels run matters.
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mlsd_predictors import CASE_STUDIES
from mlsd_predictors._host import host
from mlsd_predictors.build import _onnx, _quantize
from mlsd_predictors.build._pipeline import SELF_CHECK_ROWS, quality_gate
from mlsd_predictors.casestudies import case_study


class EmulatedRunner:
    """Runs one graph in an onnxruntime worker under `qemu-x86_64 -cpu <model>`."""

    def __init__(self, worker: subprocess.Popen, path: Path) -> None:
        self.worker, self.path = worker, str(path)

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        pickle.dump((self.path, dict(feeds)), self.worker.stdin, protocol=5)
        self.worker.stdin.flush()
        return pickle.load(self.worker.stdout)


def start_worker(cpu: str) -> subprocess.Popen:
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        sys.exit("qemu-x86_64 is missing: apt-get install qemu-user")
    return subprocess.Popen([qemu, "-cpu", cpu, sys.executable, "-m", "benchmarks._ort_worker"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def emulated_flags(cpu: str) -> str:
    """What the emulated CPU's CPUID says, as numpy's dispatcher sees it (qemu-user passes the host's
    /proc/cpuinfo through, so that file cannot tell)."""
    probe = subprocess.run(["qemu-x86_64", "-cpu", cpu, sys.executable, "-c",
                            "from numpy.core._multiarray_umath import __cpu_features__ as f; "
                            "print(' '.join(k for k, v in f.items() if v and k.startswith(('AVX', 'FMA'))))"],
                           capture_output=True, text=True, check=True)
    return probe.stdout.strip()


def measure(name: str, small: bool, seed: int, cpu: str) -> list[dict]:
    case = case_study(name, small=small, seed=seed)
    case.train(lambda *_: None)
    graphs = case.graphs()
    rows = []
    with tempfile.TemporaryDirectory(prefix=f"mlsd-isa-{name}-") as work:
        directories = {v: Path(work) / v for v in ("fp32", "int8", "int8-8bit")}
        for d in directories.values():
            d.mkdir()
        for g in graphs:
            fp32 = directories["fp32"] / g.file
            _onnx.export(g, fp32)
            _quantize.to_int8(g, fp32, directories["int8"] / g.file)
            _quantize.to_int8(g, fp32, directories["int8-8bit"] / g.file, reduce_range=False)
        worker = start_worker(cpu)
        try:
            evaluations, golden = {}, {}
            for where in ("native", cpu):
                for variant, directory in directories.items():
                    runners = {g.role: (_onnx.OnnxRunner(directory / g.file) if where == "native"
                                        else EmulatedRunner(worker, directory / g.file)) for g in graphs}
                    evaluations[where, variant] = case.evaluate(runners, "fp32" if variant == "fp32" else "int8")
                    golden[where, variant] = {
                        g.file: runners[g.role]({k: v[:SELF_CHECK_ROWS] for k, v in g.example_inputs.items()})
                        for g in graphs}
        finally:
            worker.stdin.close()
            worker.wait(60)
        expected = {g.file: _onnx.torch_outputs(g) for g in graphs}
        for where in ("native", cpu):
            for variant in ("int8", "int8-8bit"):
                gate = quality_gate(case, evaluations[where, variant], evaluations[where, "fp32"], 0.01, seed=seed)
                # The build's tolerance (half the variant's own error vs torch on the golden rows) and
                # how far the other CPU's outputs are from this one's on them.
                tolerance, difference = 0.0, 0.0
                for g in graphs:
                    for out, value in golden["native", variant][g.file].items():
                        reference = expected[g.file][out][:SELF_CHECK_ROWS]
                        tolerance = max(tolerance, 0.5 * float(np.abs(value - reference).max()))
                        difference = max(difference, float(np.abs(golden[cpu, variant][g.file][out] - value).max()))
                rows.append({
                    "case": name, "cpu": where, "variant": variant, "metric": case.primary_metric,
                    "fp32": evaluations[where, "fp32"].metrics[case.primary_metric],
                    "value": evaluations[where, variant].metrics[case.primary_metric],
                    "drop": gate.drop, "upper": gate.drop_upper, "examples": gate.examples,
                    "self_check": difference, "tolerance": tolerance,
                })
    return rows


def table(rows: list[dict], cpu: str, flags: str) -> str:
    native = host()
    lines = [
        f"native: {native['cpu']} ({' '.join(native['isa'])}), onnxruntime {native['onnxruntime']}",
        f"{cpu}: qemu-x86_64 -cpu {cpu} ({flags})", "",
        "| case study | CPU | variant | metric | fp32 | int8 | drop | 95% upper | servable at 1% | "
        "golden rows: native vs " + cpu + " (tolerance) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        check = f"{r['self_check']:.2g} ({r['tolerance']:.2g})" if r["cpu"] == "native" else ""
        lines.append(
            f"| {r['case']} | {r['cpu']} | {r['variant']} | {r['metric']} | {r['fp32']:.4f} | {r['value']:.4f} | "
            f"{r['drop']:.2%} | {r['upper']:.2%} | {'yes' if r['upper'] <= 0.01 else 'no'} | {check} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quantization_isa", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=CASE_STUDIES, default=list(CASE_STUDIES))
    parser.add_argument("--cpu", default="Haswell-v4", help="qemu CPU model (Haswell-v4: AVX2, FMA, no AVX-512/VNNI)")
    parser.add_argument("--full", action="store_true", help="full-size models (slow under emulation)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = [r for name in args.cases for r in measure(name, not args.full, args.seed, args.cpu)]
    report = table(rows, args.cpu, emulated_flags(args.cpu))
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
