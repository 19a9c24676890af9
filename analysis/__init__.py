"""analysis: experiments, plots and reports (stages 4 and 5), one idea per module.

- `analysis.network`: the alpha-beta network model as pure functions (`Network`,
  `ring_allreduce_time`, `ring_allgather_time`, `parameter_server_time`, `p2p_time`, `comm_time`,
  `iteration_time`).
- `analysis.compare`: `compare(workload, methods, seeds=...)` trains each method once per seed
  with `coders.runtime.train` and summarizes it (final / time-to-target metric as mean and spread,
  bits up/down per worker per step, codec time, iteration time under the network model),
  `aggregate_seeds`, `bandwidth_sweep`; re-exports the network model and rate-distortion names.
- `analysis.codec_cost`: codec time of each method measured in isolation (one worker, one
  thread, warm, median over steps) on the workload and on synthetic layers per size.
- `analysis.step_time`: modelled step time per method and bandwidth, for the workload and
  projected model sizes (`--model-params`, e.g. 124M, 1.5B).
- `analysis.rate_distortion`: `rate_distortion` of compressors and quantizer + codebooks on
  captured gradients, `aggregate_rd` (a coding experiment).
- `analysis.run_dir`: which directories of a run hold a workload's capture and tables.
- `analysis.tables`: the report's tables as DataFrames (fits, bits, comparison, display tables).
- `analysis.plots`: one seaborn figure per function, one colour per method / model everywhere;
  `analysis.figures` draws the ones a run directory supports, with captions, into `figures/`.
- `analysis.headline`, `analysis.provenance`: the report's first screen (what was found, how).
- `analysis.report.write_report(run_dir)`: a self-contained `report.html`;
  `analysis.render_check`: renders it in headless Chromium (overflow, broken images, screenshots).
- `analysis.demo.run_demo(out, DemoConfig())`: the main job behind `gradstats demo`.
"""
