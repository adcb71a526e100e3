"""Policy-gradient algorithms over one shared core: PPO, TRPO, TRPL."""

from tr_jax.algorithms.base import Algorithm, AlgoState, Batch


def make_algorithm(config, policy, value) -> Algorithm:
    """Dispatches on ``config.algorithm`` ("ppo", "trpo", "trpl")."""
    if config.algorithm == "ppo":
        from tr_jax.algorithms.ppo import make_ppo

        return make_ppo(config, policy, value)
    if config.algorithm == "trpo":
        from tr_jax.algorithms.trpo import make_trpo

        return make_trpo(config, policy, value)
    if config.algorithm == "trpl":
        from tr_jax.algorithms.trpl import make_trpl

        return make_trpl(config, policy, value)
    raise ValueError(f"unknown algorithm {config.algorithm!r}; expected one of ('ppo', 'trpo', 'trpl')")


__all__ = ["Algorithm", "AlgoState", "Batch", "make_algorithm"]
