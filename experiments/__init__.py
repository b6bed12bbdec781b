"""Research runners beside the package: levers, seeds, ablations (README.md here)."""
