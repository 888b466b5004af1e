"""fp16 and int8 variants of an exported fp32 graph.

fp16: every float tensor and weight converted (onnxruntime.transformers.float16), inputs and outputs
kept float32 so clients send and receive the same tensors for every precision.
int8, per graph (Graph.quantization):
  static  -- CNN graphs (visual search, harmful content). QDQ, int8 weights per channel and int8
             activations with ranges calibrated (MinMax) on training-distribution batches. Conv
             activations have stable ranges, and static QDQ lets onnxruntime fuse int8 convolutions;
             dynamic quantization would compute ranges on every call (ConvInteger, slower on CPU).
  dynamic -- embedding + MLP graphs (video recommendation, ad clicks). int8 weights (MatMul, Gemm,
             Gather: the embedding tables are most of the bytes), activation ranges computed per
             batch, so there is no calibration set to keep representative of live traffic.

Both use 7-bit weights (`reduce_range`), so the variant computes the same on every x86 CPU. On x86,
onnxruntime runs int8 products as u8 activations x s8 weights; without VNNI (AVX2, AVX-512F/BW)
that is VPMADDUBSW, which adds two u8*s8 products into a saturating int16: 2 x 255 x 127 overflows
it, 2 x 255 x 63 does not. With 8-bit weights visual search (`--small --seed 7`) scored precision@10
0.3513 on a VNNI CPU (exact int32 products) and 0.3447 on an AVX2-only one; with 7-bit weights the
integer arithmetic is exact on both and the outputs are identical, and the load-time self-check (golden rows in every variant) verifies it where it
serves. onnxruntime's quantization guide gives the same remedy (reduce_range, or U8U8).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxruntime.transformers.float16 import convert_float_to_float16

from ..casestudies import Graph


def to_fp16(source: Path, target: Path) -> str:
    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))
    return "fp16 weights and activations, float32 inputs/outputs (Cast at the edges)"


class _Batches(CalibrationDataReader):
    def __init__(self, batches: tuple[dict[str, np.ndarray], ...]) -> None:
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def to_int8(graph: Graph, source: Path, target: Path, *, reduce_range: bool = True) -> str:
    """`reduce_range=False` (8-bit weights) only for benchmarks/quantization_isa.py's comparison."""
    logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs advice at WARNING on every call
    if graph.quantization == "dynamic":
        # Per-channel scales win back what the 7th bit costs: video recommendation's full-size ranker
        # lost 1.01% NDCG@10 with per-tensor 7-bit weights, 0.13% per channel (8-bit per tensor: 0.13%).
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=reduce_range)
        return ("int8 dynamic (onnxruntime.quantization.quantize_dynamic: per-channel 7-bit int8 weights, "
                "per-batch activation ranges)")
    prepared = target.with_suffix(".prepared.onnx")
    quant_pre_process(str(source), str(prepared))
    quantize_static(
        str(prepared), str(target), _Batches(graph.calibration), quant_format=QuantFormat.QDQ,
        per_channel=True, reduce_range=reduce_range, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
    )  # fmt: skip
    prepared.unlink()
    rows = sum(len(next(iter(b.values()))) for b in graph.calibration)
    return f"int8 static QDQ (per-channel 7-bit weights, MinMax activation ranges from {rows} training rows)"
