"""Shared bits of the example clients: flags, a tritonclient of either protocol, tensors."""

from __future__ import annotations

import argparse

import numpy as np

DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}


def parse(description: str, model: str, extra=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    if extra is not None:
        extra(parser)
    parser.add_argument("--url", default=None, help="host:port (default 127.0.0.1:8000 for http, :8001 for grpc: "
                                                    "`mlsd serve`'s front door, or a KServe/Triton endpoint)")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--model", default=model, help="served model name")
    args = parser.parse_args()
    args.url = args.url or ("127.0.0.1:8000" if args.protocol == "http" else "127.0.0.1:8001")
    return args


def infer(args: argparse.Namespace, feeds: dict[str, np.ndarray]):
    """One v2 inference; works against KServe (mlsd predictor) and tritonserver alike."""
    if args.protocol == "http":
        import tritonclient.http as module
    else:
        import tritonclient.grpc as module
    client = module.InferenceServerClient(args.url)
    inputs = []
    for name, array in feeds.items():
        tensor = module.InferInput(name, list(array.shape), DATATYPES[array.dtype])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    metadata = client.get_model_metadata(args.model)
    outputs = [o["name"] for o in metadata["outputs"]] if isinstance(metadata, dict) else [o.name for o in metadata.outputs]
    return client.infer(args.model, inputs), outputs
