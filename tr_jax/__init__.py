"""tr_jax: differentiable trust-region projection layers for Gaussian policies in JAX."""

__version__ = "0.1.0"
