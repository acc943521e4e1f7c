"""Workflows built on the methods, for any model that implements the protocol: compare (every method on one split,
diagnostics, plots), calibration (SBC, Geweke, VSBC), selection (K x seeds grids), checks (check_model: the
derivation checks as a user feature), benchmark (the Gaussian MF recommender benchmark), sweep (the executor
interface for embarrassingly parallel work) and plots."""
