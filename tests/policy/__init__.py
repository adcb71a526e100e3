"""Tests of tr_jax.policy (acting, loading, export) and its deprecated aliases, one file per module."""
