"""Differentiable trust-region projections for Gaussian policies (filled in by the projection modules)."""
