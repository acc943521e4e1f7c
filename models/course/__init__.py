"""Course reproductions: the MITx 6.86x K-means / EM for Gaussian mixtures and matrix completion (gmm.py),
reproduced digit for digit (docs/REFERENCE.md section 3)."""
