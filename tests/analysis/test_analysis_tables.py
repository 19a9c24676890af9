"""The report's tables (analysis.tables) carry the right numbers."""

import numpy as np
import pandas as pd
import pytest

from analysis.tables import WHOLE_MODEL, best_family, bits_table, fit_table, flag_names, headline


def test_fit_table_values(fits_frame, layers):
    t = fit_table(fits_frame).set_index("layer")
    assert list(t.index) == layers
    assert (t["best family"] == "gennorm").all() and (t["best share"] == 1.0).all()
    # beta = 0.6 + 0.1 i + 0.002 step over steps 0, 25, 50 -> median at step 25
    np.testing.assert_allclose(t["GenNorm beta"], [0.65 + 0.1 * i for i in range(len(layers))])
    f = fits_frame[fits_frame["layer"] == layers[0]]
    g = f[f["family"] == "gennorm"]  # the best family's tail errors, averaged over steps
    assert t.loc[layers[0], "tail 1e-03"] == pytest.approx(g["tail_log10_1e-03"].mean())
    n = f[f["family"] == "normal"]
    cols = ["tail_log10_1e-02", "tail_log10_1e-03", "tail_log10_1e-04"]
    assert t.loc[layers[0], "|tail| normal"] == pytest.approx(np.abs(n[cols].to_numpy()).mean())


def test_best_family_from_name_or_bic(fits_frame):
    by_bool = best_family(fits_frame)
    by_name = best_family(fits_frame.assign(best="laplace"))
    by_bic = best_family(fits_frame.drop(columns=["best"]))
    assert (by_bool == "gennorm").all() and (by_name == "laplace").all() and (by_bic == "gennorm").all()


def test_bits_table_weighted_total(bits_frame, layers):
    b = bits_frame.copy()
    b["n"] = b["layer"].map(dict(zip(layers, [100, 10, 1000, 10], strict=True)))
    t = bits_table(b).set_index("layer")
    w = np.array([100, 10, 1000, 10], float)
    ent = np.array([3.0 + 0.25 * i for i in range(4)])
    assert t.loc[WHOLE_MODEL, "entropy"] == pytest.approx((w * ent).sum() / w.sum())
    assert t.loc[layers[0], "gennorm/ans"] == pytest.approx(3.02)
    assert t.loc[layers[0], "best"] == "gennorm/ans"
    assert t.loc[layers[0], "vs bf16"] == pytest.approx(16 / 3.02)
    h = headline(None, b).set_index("layer")
    assert h.loc[layers[1], "GenNorm-ANS vs bf16"] == pytest.approx(16 / 3.27)
    assert WHOLE_MODEL not in h.index


def test_bits_table_prefers_code_capture_totals(bits_frame):
    # code_capture's TOTAL rows (bits summed over layers) and total_bits_per_entry (quantizer side
    # information included) take precedence over the per-layer average
    b = bits_frame.assign(total_bits_per_entry=bits_frame["bits_per_entry"] + 0.5)
    total = b.groupby(["step", "model", "coder"], as_index=False).first().assign(
        layer="TOTAL", total_bits_per_entry=2.0, entropy=1.5)
    t = bits_table(pd.concat([b, total], ignore_index=True)).set_index("layer")
    assert "TOTAL" not in t.index
    assert t.loc[WHOLE_MODEL, "gennorm/ans"] == pytest.approx(2.0)
    assert t.loc[WHOLE_MODEL, "entropy"] == pytest.approx(1.5)
    assert t.iloc[0]["gennorm/ans"] == pytest.approx(3.52)


def test_fit_table_names_gennorm_flags(fits_frame, layers):
    f = fits_frame.copy()
    at = (f["layer"] == layers[1]) & (f["family"] == "gennorm")
    f.loc[at & (f["step"] == 0), "flags"] = "beta_at_lower_bound: beta hit 0.05; ties_at_loc: 9 entries (1%)"
    f.loc[at & (f["step"] == 25), "flags"] = "ties_at_loc: 12 entries (2%)"
    f.loc[(f["layer"] == layers[1]) & (f["family"] == "normal"), "flags"] = "small_sample: n=10 < 30"
    t = fit_table(f).set_index("layer")
    # the GenNorm rows' flag names over steps, once each; other families' flags are not GenNorm's
    assert t.loc[layers[1], "GenNorm flags"] == "beta_at_lower_bound, ties_at_loc"
    assert t.loc[layers[0], "GenNorm flags"] == ""
    assert "GenNorm flags" in headline(f, None).columns
    assert flag_names(pd.Series([None, "", "a: x;b: y", "a: z"])) == "a, b"
    # what gradstats.fit writes: explanations with ";" and "(try t)" inside
    real = ("small_sample: n=16 < 30, estimates are unreliable; beta_at_lower_bound: beta hit 0.05 (tails "
            "heavier than GenNorm can follow; try t); ties_at_loc: 2 entries (12.5%) equal the loc 0 "
            "exactly; a continuous density cannot describe that atom (try zi-gennorm)")
    assert flag_names(pd.Series([real])) == "beta_at_lower_bound, small_sample, ties_at_loc"


def test_headline_bits_lets_every_parametric_model_compete(bits_frame):
    from analysis.tables import headline_bits

    h = headline_bits(bits_frame)
    t = bits_table(bits_frame).set_index("layer").loc[WHOLE_MODEL]
    assert h["best"] == ("gennorm/ans", pytest.approx(t["gennorm/ans"]))
    assert h["oracle"] == ("histogram/ans", pytest.approx(t["histogram/ans"]))
    # models added later (a code-length-optimal `best`, a lossless float codec) appear without a code change;
    # the lossless codec is not a quantized codebook and does not compete
    g = bits_frame[bits_frame["model"] == "gennorm"]
    extra = pd.concat([g.assign(model="best", bits_per_entry=g["bits_per_entry"] - 0.5),
                       g.assign(model="raw-bf16", bits_per_entry=0.1)], ignore_index=True)
    h2 = headline_bits(pd.concat([bits_frame, extra], ignore_index=True))
    assert h2["best"][0] == "best/ans" and h2["best"][1] == pytest.approx(h["best"][1] - 0.5)
    table = bits_table(pd.concat([bits_frame, extra], ignore_index=True))
    assert {"best/ans", "raw-bf16/huffman"} <= set(table.columns)
    assert list(table.columns[:4]) == ["layer", "entropy", "best", "vs bf16"]  # key columns first


def _summary():
    return pd.DataFrame({
        "workload": "w", "method": ["bf16", "powersgd", "mcm"], "metric_name": "accuracy", "seeds": 3,
        "final_metric": [0.9, 0.85, 0.5], "final_metric_std": [0.01, 0.02, 0.1],
        "final_metric_min": [0.89, 0.83, 0.4], "final_metric_max": [0.91, 0.87, 0.6],
        "reached_seeds": [3, 3, 0], "steps_to_target": [50.0, 40.0, np.nan], "bits_up": [6.1e5, 5.8e4, 2e5],
        "bits_down": [6.1e5, 5.8e4, 2e5], "up_ratio_vs_bf16": [1.0, 10.5, 3.05],
        "compress_s": [1e-4, 2e-4, 2e-3],
        "decompress_s": [1e-5, 1e-4, 1e-3], "time_to_target_s": [0.1, 0.05, np.nan]})


def test_compare_display_key_columns_rounded():
    from analysis.tables import compare_display

    st = pd.DataFrame([{"workload": "w", "method": m, "model": mo, "bandwidth_gbps": bw,
                        "iter_overlap_s": t * (1 + bw), "speedup_vs_bf16": 1.0}
                       for m, t in (("bf16", 1e-3), ("powersgd", 2e-3), ("mcm", 3e-3))
                       for mo in ("w (1k)", "124M projection") for bw in (1.0, 10.0, 100.0, 0.1)])
    d = compare_display(_summary(), st)
    top = list(dict.fromkeys(d.columns.get_level_values(0)))
    assert top == ["", "modelled step time, w (1k)", "modelled step time, 124M projection"]
    assert list(d.columns[:3]) == [("", "method"), ("", "final accuracy"), ("", "reached target")]
    row = d.set_index(("", "method")).loc["powersgd"]
    assert row[("", "final accuracy")] == "0.850 ± 0.020 [0.830, 0.870]"
    assert row[("", "bits up / step")] == "58 kbit" and row[("", "codec (isolated)")] == "300 us"
    assert row[("modelled step time, w (1k)", "10 Gbit/s")] == "22 ms"  # 2 ms * 11
    assert ("modelled step time, w (1k)", "0.1 Gbit/s") not in d.columns  # only 1, 10, 100 are shown
    mcm = d.set_index(("", "method")).loc["mcm"]
    assert mcm[("", "steps to target")] == "not reached" and mcm[("", "reached target")] == "0/3"


def test_speedup_rd_and_codec_tables():
    from analysis.tables import codec_size_table, fmt_seconds, rd_tables, speedup_table, winner

    st = pd.DataFrame([{"method": m, "model": "w", "bandwidth_gbps": bw, "speedup_vs_bf16": s}
                       for m, s in (("bf16", 1.0), ("mcm", 0.25)) for bw in (1.0, 10.0)])
    sp = speedup_table(st).set_index(("", "method"))
    assert sp.loc["mcm", ("speedup vs bf16, w", "10 Gbit/s")] == "0.25x"
    agg = pd.DataFrame([{"kind": "quantizer", "name": f"uniform + {m}/ans", "param": c,
                         "bits_per_entry": b + (m == "laplace"), "rel_error": c / 4}
                        for m in ("gennorm", "laplace") for c, b in ((0.5, 3.0), (2.0, 1.0))]
                       + [{"kind": "compressor", "name": "bf16", "param": np.nan, "bits_per_entry": 16.0,
                           "rel_error": 0.001}])
    q, c = rd_tables(agg)
    assert list(q.columns) == ["step c (x RMS)", "rel. error", "gennorm/ans bits", "laplace/ans bits"]
    assert q["step c (x RMS)"].tolist() == [2.0, 0.5] and q["laplace/ans bits"].tolist() == [2.0, 4.0]
    assert c.to_dict("records") == [{"compressor": "bf16", "bits / entry": 16.0, "rel. error": 0.001}]
    codec = pd.DataFrame([{"method": m, "layer": la, "entries": n, "codec_ms": ms, "codec_ns_per_entry": ns}
                          for m in ("bf16", "mcm") for la, n, ms, ns in (("workload", 100, 0.5, 5000.0),
                                                                         ("64x64", 4096, 1.0, 244.0))])
    ct = codec_size_table(codec).set_index("method")
    assert list(ct.columns) == ["workload (100)", "64x64 (4,096)", "ns / entry (largest)"]
    assert ct.loc["mcm", "64x64 (4,096)"] == "1 ms" and ct.loc["mcm", "ns / entry (largest)"] == "244"
    assert fmt_seconds(2.5) == "2.5 s" and fmt_seconds(4.1e-4) == "410 us"
    # the winner reaches the target in every seed, soonest
    assert winner(_summary())["method"] == "powersgd"
    assert winner(_summary().assign(reached_seeds=0)) is None
