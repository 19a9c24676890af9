"""analysis: experiments, plots and reports (stages 4 and 5)."""
