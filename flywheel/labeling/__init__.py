"""Human labeling in Argilla: the local server, dataset settings, sampling, and exactly-once push and pull."""
