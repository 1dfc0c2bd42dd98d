"""The lab: problems that show what goes wrong with SGD, a runner that races optimizers on them,
convergence theory next to measurement, figures, and the HTML report of ``descend demo``."""
