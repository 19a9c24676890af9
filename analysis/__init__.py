"""analysis: experiments, plots and reports (stages 4 and 5), one idea per module.

- `analysis.network`: the alpha-beta network model as pure functions (`Network`,
  `ring_allreduce_time`, `ring_allgather_time`, `parameter_server_time`, `p2p_time`, `comm_time`,
  `iteration_time`).
- `analysis.compare`: `compare(workload, methods, ...)` trains each method with
  `coders.runtime.train` and summarizes it (final / time-to-target metric, bits up/down per worker
  per step, measured compression overhead, iteration time under the network model),
  `bandwidth_sweep`; re-exports the network model and the rate-distortion names.
- `analysis.rate_distortion`: `rate_distortion` of compressors and quantizer + codebooks on
  captured gradients, `aggregate_rd` (a coding experiment).
- `analysis.run_dir`: which directories of a run hold a workload's capture and tables.
- `analysis.tables`: the report's tables as DataFrames (fits, bits, comparison, headline).
- `analysis.plots`: one seaborn figure per function; `analysis.figures` draws the ones a run
  directory supports into its `figures/`.
- `analysis.report.write_report(run_dir)`: a self-contained `report.html`.
- `analysis.demo.run_demo(out, DemoConfig())`: the main job behind `gradstats demo`.
"""
