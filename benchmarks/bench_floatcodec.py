"""Lossless float codec (`coders.floatcodec`) vs zstd on real gradients: bits per entry and throughput.

    python benchmarks/bench_floatcodec.py [--steps 3] [--repeats 3] [--big-steps 4]

Bits: per layer of the built-in workloads `digits-cnn` and `stdlib-lm` (seed 0, `p.grad` after
`--steps` training steps), for bf16 / fp16 / fp32 (the float32 gradient cast, round to nearest
even): `planes` = `encode_float` (whole blob: payload + histograms + header), `zstd19` = zstd -19
on the same bytes (4 MiB frames, as `coders.entropy.zstd_raw_bits`), and the order-0 limits:
`H_cond` = the codec's planes (non-exponent planes split by exponent == 0), `H_planes` = the same
planes unsplit, `H_bytes` = the byte planes of the issue (sum of the order-0 entropies of each byte
of the value). Totals: all layers of a workload pooled (sum of bits / sum of entries).

Throughput: one tensor, the concatenated gradients of `stdlib-lm` with d_model 256, d_ff 1024
(`--big-steps` steps of it), per format: `encode_float` / `decode_float` against constriction
alone on the same exponent plane (`AnsCoder.encode_reverse` / `decode` with the model built
beforehand: the floor of any ANS plane coder) and against zstd -3 / -19 on the same bytes.
MB/s = bytes of the format (2 or 4 per entry) per CPU second of this process (best of `repeats`;
the machine is shared, CPU time is what the code costs), one thread (torch, BLAS).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from coders.floatcodec import (  # noqa: E402
    FORMATS,
    as_float_tensor,
    decode_float,
    encode_float,
    float_code_length,
    float_format,
    plane_entropy,
    split_planes,
    sub_planes,
)

DTYPES = ("bf16", "fp16", "fp32")


def best_cpu(fn, repeats: int) -> tuple[object, float]:
    """(result, best CPU seconds of this process over `repeats` calls)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        c = time.process_time()
        out = fn()
        best = min(best, time.process_time() - c)
    return out, max(best, 1e-9)


def grads(name: str, steps: int, **options) -> dict[str, torch.Tensor]:
    from captures import make_workload

    w = make_workload(name, seed=0, **options)
    for _ in range(steps):
        w.step()
    return {n: p.grad.detach().clone() for n, p in w.model.named_parameters()}


def raw_bytes(t: torch.Tensor) -> bytes:
    """The format's bytes of t (little-endian machine: what `encode_float` and zstd see)."""
    return t.reshape(-1).view(float_format(t.dtype).int_dtype).numpy().tobytes()


def zstd_bits(raw: bytes, level: int) -> int:
    import zstandard

    c = zstandard.ZstdCompressor(level=level)
    return 8 * sum(len(c.compress(raw[i : i + (4 << 20)])) for i in range(0, len(raw), 4 << 20))


def byte_plane_entropy(raw: bytes, width_bytes: int) -> float:
    """Sum over the bytes of a value of the order-0 entropy of that byte (the issue's estimate)."""
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, width_bytes)
    return sum(plane_entropy(np.bincount(b[:, j], minlength=256)) for j in range(width_bytes))


def unsplit_entropy(t: torch.Tensor) -> float:
    return sum(plane_entropy(np.bincount(p, minlength=256)) for p in split_planes(t).values())


def constriction_alone(planes: list[np.ndarray], repeats: int) -> tuple[list, float, float]:
    """CPU seconds of constriction's AnsCoder alone on these planes, each under its histogram
    model built beforehand (the floor of any plane coder built on it): (words, encode s, decode s)."""
    import constriction

    jobs = []
    for p in planes:
        counts = np.bincount(p, minlength=256)
        lo, hi = int(np.flatnonzero(counts)[0]), int(np.flatnonzero(counts)[-1])
        jobs.append((p.astype(np.int32) - lo,
                     constriction.stream.model.Categorical(counts[lo : hi + 1] / p.size, perfect=False)))

    def enc():
        out = []
        for idx, model in jobs:
            c = constriction.stream.stack.AnsCoder()
            c.encode_reverse(idx, model)
            out.append(c.get_compressed())
        return out

    words, enc_s = best_cpu(enc, repeats)
    _, dec_s = best_cpu(lambda: [constriction.stream.stack.AnsCoder(w).decode(m, idx.size)
                                 for w, (idx, m) in zip(words, jobs, strict=True)], repeats)
    return words, enc_s, dec_s


def bits_table(steps: int) -> None:
    print(f"\n### Bits per entry, per layer ({steps} training steps, seed 0)\n")
    print("| workload | layer | n | zeros | bf16 planes | bf16 zstd19 | bf16 H_cond / H_planes / H_bytes "
          "| fp16 planes | fp16 zstd19 | fp32 planes | fp32 zstd19 | fp32 H_cond |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for wl in ("digits-cnn", "stdlib-lm"):
        tot = {d: [0, 0, 0] for d in DTYPES}  # planes bits, zstd bits, entries
        for layer, g in grads(wl, steps).items():
            cells = []
            for d in DTYPES:
                t = g.to(FORMATS[d].torch_dtype)
                raw = raw_bytes(t)
                info = float_code_length(t)
                z = zstd_bits(raw, 19)
                n = t.numel()
                tot[d][0] += info["bits"]
                tot[d][1] += z
                tot[d][2] += n
                cells.append(f"{info['bits_per_entry']:.2f}" + ("" if info["mode"] == "planes" else " (raw)"))
                cells.append(f"{z / n:.2f}")
                if d == "bf16":
                    cells.append(f"{info['entropy']:.2f} / {unsplit_entropy(t):.2f} / "
                                 f"{byte_plane_entropy(raw, 2):.2f}")
                if d == "fp32":
                    cells.append(f"{info['entropy']:.2f}")
            zeros = float((g == 0).float().mean())
            print(f"| {wl} | {layer} | {g.numel()} | {zeros:.0%} | " + " | ".join(cells) + " |")
        cells = []
        for d in DTYPES:
            p, z, n = tot[d]
            cells += [f"**{p / n:.2f}**", f"{z / n:.2f}"] + ([""] if d in ("bf16", "fp32") else [])
        print(f"| {wl} | **all layers** | {tot['bf16'][2]} | | " + " | ".join(cells) + " |")


def headline(steps: int, c: float) -> None:
    """The demo's headline per workload, all layers pooled: lossless bf16 (this codec) beside the
    quantized symbols (uniform step c * RMS per layer, histogram model, ANS, all side bits)."""
    from coders.quantizers import UniformQuantizer
    from coders.report import bits_per_entry

    print("\n### Headline (all layers pooled)\n")
    for wl in ("digits-cnn", "stdlib-lm"):
        lossless = quantized = n = 0
        for g in grads(wl, steps).values():
            lossless += float_code_length(g, "bf16")["bits"]
            row = bits_per_entry(g.numpy(), UniformQuantizer(scale_mult=c), models=("histogram",),
                                 coders=("ans",)).iloc[0]
            quantized += float(row["total_bits"])
            n += g.numel()
        x = lossless / n
        print(f"- {wl}: lossless bf16: {x:.2f} bits, {16 / x:.2f}x; quantized at c={c:g}: "
              f"{quantized / n:.2f} bits")


def throughput(big_steps: int, repeats: int) -> None:
    import zstandard

    g = grads("stdlib-lm", big_steps, d_model=256, d_ff=1024)
    x = torch.cat([v.reshape(-1) for v in g.values()])
    print(f"\n### Throughput (stdlib-lm d_model 256 / d_ff 1024, {x.numel()} entries, all layers "
          f"concatenated; MB of the format per CPU second, best of {repeats})\n")
    print("| format | bits/entry planes | zstd-3 | zstd-19 | encode MB/s | decode MB/s | constriction "
          "alone, exponent plane enc / dec MB/s | ours / that, enc, dec | constriction alone, every "
          "plane we ANS-code, enc / dec MB/s | ours / that, enc, dec | zstd-3 enc / dec MB/s "
          "| ours / zstd-3 enc, dec | zstd-19 enc / dec MB/s | ours / zstd-19 enc, dec |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for d in DTYPES:
        t = as_float_tensor(x, d)
        raw = raw_bytes(t)
        mb = len(raw) / 1e6
        blob, enc_s = best_cpu(lambda t=t: encode_float(t), repeats)
        back, dec_s = best_cpu(lambda b=blob: decode_float(b), repeats)
        assert torch.equal(back.view(FORMATS[d].int_dtype), t.view(FORMATS[d].int_dtype))
        exp = split_planes(t)["exponent"]
        words, cenc_s, cdec_s = constriction_alone([exp], repeats)
        coded = {p["plane"] for p in float_code_length(t)["planes"] if p["coder"] == "ans"}
        ans_planes = [v for name, _, v in sub_planes(t, float_format(t.dtype)) if name in coded]
        _, aenc_s, adec_s = constriction_alone(ans_planes, repeats)
        z = {}
        for level, reps in ((3, repeats), (19, 1)):
            cctx, dctx = zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor()
            frames, ze = best_cpu(lambda c=cctx, r=raw: [c.compress(r[i : i + (4 << 20)])
                                                        for i in range(0, len(r), 4 << 20)], reps)
            _, zd = best_cpu(lambda f=frames, dc=dctx: [dc.decompress(fr) for fr in f], repeats)
            z[level] = (8 * sum(len(f) for f in frames) / t.numel(), ze, zd)
        n = t.numel()
        print(f"| {d} | {8 * len(blob) / n:.3f} | {z[3][0]:.3f} | {z[19][0]:.3f} | {mb / enc_s:.0f} | "
              f"{mb / dec_s:.0f} | {mb / cenc_s:.0f} / {mb / cdec_s:.0f} | {cenc_s / enc_s:.2f}x, "
              f"{cdec_s / dec_s:.2f}x | {mb / aenc_s:.0f} / {mb / adec_s:.0f} | {aenc_s / enc_s:.2f}x, "
              f"{adec_s / dec_s:.2f}x | {mb / z[3][1]:.0f} / {mb / z[3][2]:.0f} | {z[3][1] / enc_s:.2f}x, "
              f"{z[3][2] / dec_s:.2f}x | {mb / z[19][1]:.1f} / {mb / z[19][2]:.0f} | "
              f"{z[19][1] / enc_s:.0f}x, {z[19][2] / dec_s:.2f}x |")
    print("\n(ratios: the other's CPU seconds / ours, so > 1 means ours is faster)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--big-steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--c", type=float, default=0.5, help="step of the quantized headline, in RMS units")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from importlib.metadata import version

    import zstandard

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
          f"zstandard {zstandard.__version__}, constriction {version('constriction')}, "
          f"load average {os.getloadavg()[0]:.1f}")
    bits_table(args.steps)
    headline(args.steps, args.c)
    throughput(args.big_steps, args.repeats)


if __name__ == "__main__":
    main()
