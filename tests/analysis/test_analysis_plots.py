"""Each figure has the expected axes, series and labels, and saves in the format of its suffix."""

import numpy as np
import pandas as pd
import pytest

from analysis import plots


def _line_labels(ax):
    return [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")]


def test_density_overlays_each_family(sample, tmp_path):
    x, fits = sample
    fig = plots.plot_density(x, fits, title="fc.weight", path=tmp_path / "d.png")
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() and ax.get_ylabel()
    labels = _line_labels(ax)
    assert labels[:2] == ["Normal", "Laplace"] and labels[2].startswith("GenNorm")
    # the overlaid GenNorm curve is the family's pdf: compare against scipy at the curve's points
    from scipy import stats

    g = fits[fits["family"] == "gennorm"].iloc[0]
    xs, ys = ax.get_lines()[2].get_data()
    np.testing.assert_allclose(ys, stats.gennorm(g["beta"], g["loc"], g["scale"]).pdf(xs), rtol=1e-6)
    # the histogram is a density: it integrates to one
    (hist,) = ax.patches
    values, edges, _ = hist.get_data()
    assert np.nansum(values * np.diff(edges)) == pytest.approx(1.0)
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tail_empirical_matches_order_statistics(sample):
    x, fits = sample
    fig = plots.plot_tail(x, fits)
    (ax,) = fig.axes
    emp = ax.get_lines()[0]
    assert emp.get_label() == "empirical"
    t, p = emp.get_data()
    loc0 = fits.iloc[0]["loc"]
    # each point: fraction of |x - loc| strictly above t equals the plotted survival
    frac = np.array([(np.abs(x - loc0) > ti).mean() for ti in t])
    np.testing.assert_allclose(frac, p, atol=1.0 / len(x))
    assert p.min() <= 2.0 / len(x)  # the tail is drawn down to the last points
    assert len(_line_labels(ax)) == 4


def test_qq_one_panel_per_family(sample):
    x, fits = sample
    fig = plots.plot_qq(x, fits)
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert ax.get_xlabel() == "model quantile" and ax.get_ylabel() == "empirical quantile"
        assert len(ax.get_lines()) == 2
    # the GenNorm panel's points are the family's quantiles against the sample's quantiles
    from scipy import stats

    g = fits.iloc[2]
    model, emp = fig.axes[2].get_lines()[0].get_data()
    p = stats.gennorm(g["beta"], g["loc"], g["scale"]).cdf(model)
    np.testing.assert_allclose(emp, np.quantile(x, p), rtol=1e-6, atol=1e-9)
    assert p.min() < 1e-3 and p.max() > 1 - 1e-3  # both tails are drawn


def test_zero_inflated_family(sample):
    x, fits = sample
    x = np.where(np.abs(x) < 2e-4, 0.0, x)  # an atom at exactly 0, as dead ReLUs give
    pi = float((x == 0).mean())
    zi = fits[fits["family"] == "gennorm"].assign(family="zi-gennorm", pi=pi)
    d = plots.family_dist(zi.iloc[0])
    # the continuous part is (1 - pi) times the GenNorm density
    from scipy import stats

    g = zi.iloc[0]
    gn = stats.gennorm(g["beta"], g["loc"], g["scale"])
    np.testing.assert_allclose(d.pdf([1e-3]), (1 - pi) * gn.pdf(1e-3))
    fig = plots.plot_density(x, pd.concat([fits, zi], ignore_index=True))
    labels = _line_labels(fig.axes[0])
    assert len(labels) == 5 and labels[3].startswith("ZI-GenNorm") and "atom at 0" in labels[4]
    assert fig.axes[0].get_lines()[3].get_linestyle() == "--"
    # the atom is a stem at 0 of height pi / (bin width): the density it adds to the bin holding 0
    xs, ys = fig.axes[0].get_lines()[4].get_data()
    (hist,) = fig.axes[0].patches
    edges = hist.get_data()[1]
    assert list(xs) == [0.0, 0.0] and ys[1] == pytest.approx(pi / (edges[1] - edges[0]))
    assert len(plots.plot_qq(x, pd.concat([fits, zi], ignore_index=True)).axes) == 4


def test_beta_heatmap_layers_by_steps(fits_frame, layers, steps, tmp_path):
    fig = plots.plot_beta_heatmap(fits_frame, path=tmp_path / "b.svg")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == layers
    assert [int(t.get_text()) for t in ax.get_xticklabels()] == steps
    mesh = ax.collections[0].get_array().reshape(len(layers), len(steps))
    expect = fits_frame[fits_frame["family"] == "gennorm"].pivot(index="layer", columns="step", values="beta")
    np.testing.assert_allclose(mesh, expect.loc[layers].to_numpy())
    assert (tmp_path / "b.svg").read_text().lstrip().startswith("<?xml")


def test_beta_heatmap_needs_gennorm(fits_frame):
    with pytest.raises(ValueError, match="gennorm"):
        plots.plot_beta_heatmap(fits_frame[fits_frame["family"] != "gennorm"])


def test_bits_per_layer_series_and_entropy(bits_frame, layers, tmp_path):
    fig = plots.plot_bits_per_layer(bits_frame, path=tmp_path / "bits.pdf")
    ax = fig.axes[0]
    ent = [ln for ln in ax.get_lines() if ln.get_label() == "empirical entropy"]
    assert len(ent) == 1
    np.testing.assert_allclose(ent[0].get_xdata(), [3.0 + 0.25 * i for i in range(len(layers))])
    # one marker series per (model, coder) pair, plus the entropy; layers are categories: no joining lines
    data_lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == len(layers)]
    assert len(data_lines) == 4 * 2 + 1 and all(ln.get_linestyle() == "None" for ln in data_lines)
    assert ax.get_xlabel() == "bits per entry"
    assert [t.get_text() for t in ax.get_yticklabels()] == layers
    # with sizes the layers are ordered largest first and labelled with their entries
    sizes = {la: 10 ** i for i, la in enumerate(layers)}
    ax = plots.plot_bits_per_layer(bits_frame, sizes=sizes).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{la} ({sizes[la]:,})" for la in layers[::-1]]
    assert (tmp_path / "bits.pdf").read_bytes()[:4] == b"%PDF"


def test_rate_distortion_curves_and_markers(rd_frame):
    fig = plots.plot_rate_distortion(rd_frame)
    ax = fig.axes[0]
    labels = _line_labels(ax)
    assert labels == ["uniform + gennorm/ans", "uniform + laplace/ans", "bf16", "topk-1%", "sign"]
    curve = ax.get_lines()[0]
    assert len(curve.get_xdata()) == 4 and np.all(np.diff(curve.get_xdata()) > 0)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="kind"):
        plots.plot_rate_distortion(rd_frame.assign(kind="other"))


def test_metric_vs_bits_and_time(history_frame):
    fig = plots.plot_metric_vs_bits(history_frame)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "test accuracy"
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["bf16", "powersgd", "signum-mv"]
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 5]
    assert len(lines) == 3
    # x = cumulative up + down bits at the evaluated steps 10, 20, ..., 50 (both links charged)
    xs = sorted(tuple(np.asarray(ln.get_xdata(), dtype=float)) for ln in lines)
    per_step = {"bf16": 32e5, "powersgd": 6e4, "signum-mv": 2e5}
    expect = sorted(tuple(b * np.array([10, 20, 30, 40, 50])) for b in per_step.values())
    np.testing.assert_allclose(xs, expect)
    assert ax.get_xlabel() == "cumulative bits per worker, up+down (log scale)"
    up = plots.plot_metric_vs_bits(history_frame.sample(frac=1.0, random_state=0), direction="up").axes[0]
    xs_up = sorted(tuple(np.asarray(ln.get_xdata(), dtype=float)) for ln in up.get_lines()
                   if len(ln.get_xdata()) == 5)
    np.testing.assert_allclose(xs_up, np.array(expect) / 2)  # rows in any order: cumsum over steps
    with pytest.raises(ValueError, match="direction"):
        plots.plot_metric_vs_bits(history_frame, direction="sideways")
    fig = plots.plot_metric_vs_time(history_frame, network="10 Gbit/s")
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("estimated wall time (s)")
    xs = sorted(float(ln.get_xdata()[-1]) for ln in ax.get_lines() if len(ln.get_xdata()) == 5)
    np.testing.assert_allclose(xs, [0.5, 0.6, 1.0])


def test_bad_inputs(sample, tmp_path):
    x, fits = sample
    with pytest.raises(ValueError, match="suffix|end in"):
        plots.plot_density(x, fits, path=tmp_path / "d.jpg")
    with pytest.raises(ValueError, match="non-finite"):
        plots.plot_density(np.array([1.0, np.nan]), fits)
    with pytest.raises(ValueError, match="lacks columns"):
        plots.plot_bits_per_layer(pd.DataFrame({"layer": ["a"]}))
    with pytest.raises(ValueError, match="family"):
        plots.plot_tail(x, fits.assign(family="cauchy"))
    with pytest.raises(ValueError, match="non-finite"):
        plots.plot_tail(x, fits.assign(scale=np.nan))


def test_iteration_time_vs_bandwidth():
    sweep = pd.DataFrame({"method": ["bf16", "bf16", "powersgd", "powersgd"],
                          "bandwidth_gbps": [1, 10, 1, 10], "iter_overlap_s": [0.2, 0.03, 0.05, 0.04],
                          "latency_us": 5.0})
    ax = plots.plot_iteration_time_vs_bandwidth(sweep).axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    got = sorted(tuple(ln.get_ydata()) for ln in ax.get_lines() if len(ln.get_xdata()) == 2)
    assert got == [(0.05, 0.04), (0.2, 0.03)]
    assert "latency 5 us" in ax.get_title()


def _line(ax, label):
    (ln,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return ln


def test_method_colours_are_fixed_across_figures(history_frame):
    from matplotlib.colors import to_hex

    order = ("signum-mv", "bf16", "powersgd")
    shuffled = pd.concat([history_frame[history_frame["method"] == m] for m in order])
    sweep = pd.DataFrame({"method": ["powersgd", "bf16"] * 2, "bandwidth_gbps": [1, 1, 10, 10],
                          "iter_overlap_s": [0.1, 0.2, 0.05, 0.03]})
    axes = [plots.plot_metric_vs_bits(history_frame).axes[0], plots.plot_metric_vs_bits(shuffled).axes[0],
            plots.plot_training_curves(shuffled).axes[1],
            plots.plot_iteration_time_vs_bandwidth(sweep).axes[0]]
    for ax in axes:
        for m in ("bf16", "powersgd"):
            assert to_hex(_line(ax, m).get_color()) == to_hex(plots.method_color(m))
    assert plots.method_color("bf16") == "#000000"
    assert plots.method_color("some-new-method") == plots.method_color("some-new-method")  # hashed, stable


def test_band_over_seeds_is_min_to_max_around_the_mean(history_frame):
    h = pd.concat([history_frame.assign(seed=s, metric=history_frame["metric"] + 0.01 * s)
                   for s in (0, 1, 2)])
    fig = plots.plot_training_curves(h)
    ax = fig.axes[1]  # evaluated metric vs step
    ln = _line(ax, "bf16")
    base = history_frame[(history_frame["method"] == "bf16")].dropna(subset=["metric"])
    np.testing.assert_allclose(ln.get_ydata(), base["metric"].to_numpy() + 0.01)
    (band, *_) = [c for c in ax.collections if c.get_facecolor()[0][:3].tolist() == [0.0, 0.0, 0.0]]
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(base["metric"].min())
    assert ys.max() == pytest.approx(base["metric"].max() + 0.02)
    assert "mean over 3 seeds" in fig._suptitle.get_text()


def test_beta_heatmap_marks_bound_fits_off_the_colour_scale(fits_frame, layers):
    f = fits_frame.copy()
    g = f["family"] == "gennorm"
    f.loc[g & (f["layer"] == layers[0]) & (f["step"] == 0), "beta"] = 50.0  # at the upper bound
    f.loc[g & (f["layer"] == layers[1]) & (f["step"] == 25), "beta"] = 0.05  # at the lower bound
    ax = plots.plot_beta_heatmap(f, sizes={la: 10 for la in layers}).axes[0]
    mesh = ax.collections[0]
    arr = mesh.get_array()
    assert np.ma.count_masked(arr) == 2  # the two bound fits are not coloured
    assert mesh.norm.vmax <= 3.0 and mesh.norm.vmax == pytest.approx(f[g]["beta"][f[g]["beta"] < 50].max())
    texts = [t.get_text() for t in ax.texts]
    assert "50\nbound" in texts and "0.05\nbound" in texts
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{la} (10)" for la in layers]


def test_qq_panels_span_their_own_points(sample):
    x, fits = sample
    fig = plots.plot_qq(x, fits)
    for ax in fig.axes:
        model, emp = ax.get_lines()[0].get_data()
        lo, hi = ax.get_xlim()
        assert lo <= min(model.min(), emp.min()) and hi >= max(model.max(), emp.max())
    for ax in fig.axes:  # no axis is shared between panels
        assert ax.get_shared_x_axes().get_siblings(ax) == [ax]


def test_gap_parts_add_up_to_the_total(bits_frame):
    g = plots.gap_parts(bits_frame.assign(n=1000)).set_index(["model", "coder"])
    parts = g["entropy"] + g["mismatch"] + g["coder_overhead"] + g["side"]
    np.testing.assert_allclose(parts, g["total"])
    # the fixture: cross-entropy = H + gap, payload = bits - 0.01, side = 0.01
    assert g.loc[("laplace", "ans"), "mismatch"] == pytest.approx(0.2)
    assert g.loc[("laplace", "huffman"), "coder_overhead"] == pytest.approx(0.04 - 0.01)
    fig = plots.plot_gap_breakdown(bits_frame)
    assert len(fig.axes[0].patches) == 4 * len(g)  # four stacked parts per model / coder


def test_bits_vs_entropy_and_over_steps(bits_frame, layers, steps):
    sizes = {la: 10 ** (i + 1) for i, la in enumerate(layers)}
    ax = plots.plot_bits_vs_entropy(bits_frame, sizes=sizes).axes[0]
    pts = ax.collections[0]  # histogram / ans
    xy = pts.get_offsets()
    np.testing.assert_allclose(xy[:, 0], [3.0 + 0.25 * i for i in range(len(layers))])
    np.testing.assert_allclose(xy[:, 1], [3.05 + 0.25 * i for i in range(len(layers))])
    area = pts.get_sizes()
    assert np.all(np.diff(area) > 0)  # larger layers, larger markers
    ax = plots.plot_bits_over_steps(bits_frame.assign(n=1000)).axes[0]
    ln = _line(ax, "gennorm / ans")
    assert list(ln.get_xdata()) == steps
    np.testing.assert_allclose(ln.get_ydata(), np.mean([3.0 + 0.25 * i for i in range(4)]) + 0.02)


def test_fit_quality_dots_are_means_over_steps(fits_frame, layers):
    fig = plots.plot_fit_quality(fits_frame)
    ks_ax = fig.axes[0]
    assert ks_ax.get_xscale() == "log" and [t.get_text() for t in ks_ax.get_yticklabels()] == layers
    means = fits_frame[fits_frame["family"] == "gennorm"].groupby("layer")["ks"].mean().reindex(layers)
    (bars,) = [c for c in ks_ax.containers if c.get_label() == "gennorm"]
    dots = bars.lines[0]
    np.testing.assert_allclose(np.asarray(dots.get_xdata(), dtype=float), means.to_numpy())


def test_long_layer_names_are_not_cut():
    name = "model.encoder.layer.0.convolution.weight"  # cut to "...ayer.0.convolution.weight" before
    b = pd.DataFrame([{"layer": name, "model": "gennorm", "coder": "ans", "bits_per_entry": 3.0,
                       "entropy": 2.9}])
    assert [t.get_text() for t in plots.plot_bits_per_layer(b).axes[0].get_yticklabels()] == [name]
