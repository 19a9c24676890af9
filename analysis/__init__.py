"""analysis: experiments, plots and reports (stages 4 and 5).

- `analysis.compare`: `compare(workload, methods, ...)` trains each method with
  `coders.runtime.train` and summarizes it (final / time-to-target metric, bits up/down per worker
  per step, measured compression overhead, iteration time under the alpha-beta `Network` model);
  the network model itself as pure functions (`ring_allreduce_time`, `ring_allgather_time`,
  `parameter_server_time`, `p2p_time`, `iteration_time`), `bandwidth_sweep`, and
  `rate_distortion` of compressors and quantizer + codebooks on captured gradients.
- `analysis.plots`: one seaborn figure per function (density, tail, QQ, beta heatmap, bits per
  layer, rate-distortion, metric vs bits / time, time vs bandwidth).
- `analysis.report.write_report(run_dir)`: a self-contained `report.html`.
- `analysis.demo.run_demo(out, DemoConfig())`: the main job behind `gradstats demo`.
"""
