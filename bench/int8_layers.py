"""Which matrix products int8 quantisation may touch: per-prompt cosine to torch when a group of the encoder's
MatMul nodes stays fp32 (docs/performance.md, "Encoder backends").

    PYTHONPATH=. python -m bench.int8_layers [--prompts 600] [--cache /tmp/int8-layers]

The bundled encoder is exported to ONNX once (into ``--cache``), then quantised like ``router.encoder._quantize``
(dynamic, MatMul only, per channel) once per variant with ``nodes_to_exclude``; each variant encodes the same
seeded sample of the RouterBench subset's distinct prompt texts, and its vectors are compared with torch's.
Seconds are one encode of the sample in this process (compare them within one run only).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _texts(n: int, seed: int = 0) -> list[str]:
    import polars as pl

    texts: list[str] = []
    for path in sorted((ROOT / "data" / "routerbench_subset").glob("*.csv")):
        texts += pl.read_csv(path, columns=["prompt"], infer_schema_length=0)["prompt"].drop_nulls().to_list()
    texts = list(dict.fromkeys(texts))
    picked = np.random.default_rng(seed).choice(len(texts), min(n, len(texts)), replace=False)
    return [texts[i] for i in picked]


def variants(names: list[str]) -> dict[str, list[str]]:
    """Label → MatMul nodes kept in fp32."""
    def sel(pred: Callable[[str], bool]) -> list[str]:
        return [n for n in names if pred(n)]

    def ffn_out(n: str) -> bool:
        return "/output/dense/" in n and "/attention/" not in n

    out = {"none (every MatMul int8)": [],
           "query": sel(lambda n: "/self/query/" in n), "key": sel(lambda n: "/self/key/" in n),
           "value": sel(lambda n: "/self/value/" in n),
           "attention output": sel(lambda n: "/attention/output/dense/" in n),
           "feed-forward up (intermediate)": sel(lambda n: "/intermediate/dense/" in n),
           "feed-forward down": sel(ffn_out)}
    for k in range(6):
        out[f"feed-forward down, layer {k}"] = sel(lambda n, k=k: ffn_out(n) and f"/layer.{k}/" in n)
    out["feed-forward down, layers 0-2 (router.encoder._kept_fp32)"] = sel(
        lambda n: ffn_out(n) and any(f"/layer.{k}/" in n for k in range(3)))
    out["every dense layer"] = sel(lambda n: "/dense/" in n)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=600)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/int8-layers"))
    args = parser.parse_args()

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from router import encoder as enc
    from router.settings import BUNDLED_ENCODER

    texts = _texts(args.prompts)
    torch_model = enc.open_encoder(BUNDLED_ENCODER, "cpu")
    start = time.perf_counter()
    reference = enc.encode(torch_model, texts, 64)
    print(f"torch: {time.perf_counter() - start:.1f} s for {len(texts)} prompts\n")
    fp32 = enc.open_encoder(BUNDLED_ENCODER, "cpu", backend="onnx", cache=args.cache)
    traced = fp32.path.with_name(enc.TRACED_FILE)  # the unfused trace, which router.encoder._quantize quantises
    names = [n.name for n in onnx.load(str(traced), load_external_data=False).graph.node if n.op_type == "MatMul"]
    print("| kept in fp32 | MatMuls kept | min cosine | mean cosine | 1st percentile | encode s |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, kept in variants(names).items():
        path = args.cache / f"variant-{len(kept)}-{abs(hash(label))}.onnx"
        quantize_dynamic(traced, path, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         per_channel=True, nodes_to_exclude=kept)
        model = enc.OnnxEncoder(fp32.model, path, ["CPUExecutionProvider"])
        start = time.perf_counter()
        vectors = enc.encode(model, texts, 64)
        seconds = time.perf_counter() - start
        cosine = (vectors * reference).sum(axis=1)
        print(f"| {label} | {len(kept)} | {cosine.min():.4f} | {cosine.mean():.4f} | "
              f"{np.percentile(cosine, 1):.4f} | {seconds:.1f} |", flush=True)
        path.unlink()


if __name__ == "__main__":
    main()
