"""Rate-distortion of compressors and quantizer + codebook pairs on the same captured gradients.

A coding experiment (stage 3 operators measured on stage 1 data): each compressor of
`coders.compressors` at typical settings gives one (bits per entry, relative error) point from its
exact wire bits; a uniform quantizer with step c * RMS(x) coded under each probability model gives
one curve over c. Relative error is ||x - x_hat||_2 / ||x||_2; `aggregate_rd` pools layers as
total bits / total entries and sqrt(sum ||x - x_hat||^2 / sum ||x||^2).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# (label, compressor name, options): each operator of coders.compressors at typical settings
RD_COMPRESSORS: tuple[tuple[str, str, dict], ...] = (
    ("bf16", "bf16", {}),
    ("top-k 1%", "topk", {"ratio": 0.01}),
    ("top-k 10%", "topk", {"ratio": 0.1}),
    ("rand-k 10%", "randk", {"ratio": 0.1}),
    ("QSGD s=4", "qsgd", {"levels": 4}),
    ("QSGD s=16", "qsgd", {"levels": 16}),
    ("scaled sign", "scaled_sign", {}),  # plain sign(x) has no scale to reconstruct x with
    ("PowerSGD rank 1", "lowrank", {"rank": 1}),
    ("PowerSGD rank 4", "lowrank", {"rank": 4}),
)
# step = c * RMS(x): from coarse (about 1 bit) to fine (about 8 bits per entry)
RD_STEP_MULTS: tuple[float, ...] = (2.0, 1.0, 0.5, 0.25, 0.1, 0.03)
# zi-gennorm: real layers hold exact zeros (dead ReLUs, zero pixels) that a continuous GenNorm wastes bits on
RD_MODELS: tuple[str, ...] = ("zi-gennorm", "gennorm", "laplace", "normal")
# coded-sgd's message (coders.compressors.entropy_coded, the bytes the method sends), one point per step c
RD_CODED_STEP_MULTS: tuple[float, ...] = (1.0, 0.5, 0.25)
CODED_BLOCK = 4096  # the method's default block of bf16 scales
# lossless codes of the raw floats (coders.floatcodec): fp32 at distortion 0, bf16 at its rounding error
RD_LOSSLESS_FORMATS: tuple[str, ...] = ("bf16", "fp32")


def _rel_error(x, xhat) -> tuple[float, float]:
    """(||x - x_hat||^2, ||x||^2) in float64."""
    import torch

    x = torch.as_tensor(x).double().reshape(-1)
    xhat = torch.as_tensor(xhat).to(x.device).double().reshape(-1)
    return float(((x - xhat) ** 2).sum()), float((x**2).sum())


def rate_distortion(tensors: dict, compressors=RD_COMPRESSORS, step_mults=RD_STEP_MULTS,
                    models=RD_MODELS, coder: str = "ans", coded_step_mults=RD_CODED_STEP_MULTS,
                    lossless=RD_LOSSLESS_FORMATS) -> pd.DataFrame:
    """Bits per entry and relative error of each compressor and quantizer + codebook on the same tensors.

    `tensors` maps a layer name to its gradient (full shape, so low-rank operators see the
    matrix). Compressor rows: `Payload.bits` (exact wire bits) per entry, error of
    decompress(compress(x)). Quantizer rows: a uniform quantizer with step c * RMS(x) coded by
    `coder` under each probability model (`coders.bits_per_entry`, side information included).
    One row per (layer, name, param) with `bits`, `n`, `sq_err`, `sq_norm`, `bits_per_entry`,
    `rel_error` = ||x - x_hat|| / ||x||; `aggregate_rd` pools the layers. Kind "coded": the
    message `coded-sgd` sends (quantizer c * RMS, fitted ZI-GenNorm, ANS; 8 x its bytes, model
    included). Kind "lossless": the plane codec of the raw floats in each format of `lossless`
    (8 x blob bytes; error = the format's rounding, 0 for fp32).
    """
    import torch

    from coders.compressors import make_compressor
    from coders.compressors.entropy_coded import EntropyCodec
    from coders.floatcodec import decode_float, encode_float
    from coders.quantizers import UniformQuantizer
    from coders.report import bits_per_entry

    if not tensors:
        raise ValueError("rate_distortion needs at least one tensor")
    rows = []
    for layer, x in tensors.items():
        t = torch.as_tensor(x).float()
        n = t.numel()
        if n == 0 or float((t.double() ** 2).sum()) == 0.0:
            continue  # an all-zero gradient has no relative error to speak of
        for label, name, opts in compressors:
            c = make_compressor(name, **opts)
            payload = c.compress(t, {})
            err, norm = _rel_error(t, c.decompress(payload))
            rows.append({"layer": layer, "kind": "compressor", "name": label, "param": np.nan,
                         "n": n, "bits": float(payload.bits), "sq_err": err, "sq_norm": norm})
        a = t.reshape(-1).cpu().numpy()
        for mult in step_mults:
            q = UniformQuantizer(scale_mult=mult)
            err, norm = _rel_error(a, q.dequantize(q.quantize(a)))
            bpe = bits_per_entry(a, quantizer=q, models=list(models), coders=[coder])
            col = "total_bits_per_entry" if "total_bits_per_entry" in bpe.columns else "bits_per_entry"
            for _, r in bpe.iterrows():
                rows.append({"layer": layer, "kind": "quantizer", "name": f"uniform + {r['model']}/{coder}",
                             "param": mult, "n": n, "bits": float(r[col]) * n, "sq_err": err,
                             "sq_norm": norm})
        for mult in coded_step_mults:
            codec = EntropyCodec("uniform", scale_mult=mult, block_size=CODED_BLOCK, model="zi-gennorm",
                                 coder=coder)
            msg, xhat, _ = codec.encode(t.reshape(-1), codec.sender(0))
            err, norm = _rel_error(t, xhat)
            rows.append({"layer": layer, "kind": "coded", "name": "coded-sgd (zi-gennorm/ans)", "param": mult,
                         "n": n, "bits": 8.0 * msg.numel(), "sq_err": err, "sq_norm": norm})
        for fmt in lossless:
            blob = encode_float(t, fmt)
            err, norm = _rel_error(t, decode_float(blob).float())
            rows.append({"layer": layer, "kind": "lossless", "name": f"lossless {fmt} (planes-ans)",
                         "param": np.nan, "n": n, "bits": 8.0 * len(blob), "sq_err": err, "sq_norm": norm})
    df = pd.DataFrame(rows)
    if df.empty:
        raise ValueError("rate_distortion: every tensor was empty or all zero")
    df["bits_per_entry"] = df["bits"] / df["n"]
    df["rel_error"] = np.sqrt(df["sq_err"] / df["sq_norm"])
    return df


def aggregate_rd(rd: pd.DataFrame) -> pd.DataFrame:
    """Pool per-layer rate-distortion rows over layers.

    bits per entry = total bits / total entries; relative error = sqrt(sum err^2 / sum ||x||^2).
    """
    keys = ["kind", "name", "param"]
    cols = ["bits", "n", "sq_err", "sq_norm"]
    missing = [c for c in (*keys, *cols) if c not in rd.columns]
    if missing:
        raise ValueError(f"aggregate_rd: rate-distortion frame lacks columns {missing}")
    g = rd.assign(param=rd["param"].fillna(-1.0)).groupby(keys, sort=False)[cols]
    out = g.sum().reset_index()
    out["param"] = out["param"].where(out["param"] >= 0, np.nan)
    out["layer"] = "all"
    out["bits_per_entry"] = out["bits"] / out["n"]
    out["rel_error"] = np.sqrt(out["sq_err"] / out["sq_norm"])
    return out
