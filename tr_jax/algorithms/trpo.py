"""Trust Region Policy Optimisation as an :class:`~tr_jax.algorithms.base.Algorithm`.

Policy step (once per iteration, on the full batch of ``N`` states):

1. surrogate ``L(theta) = mean(exp(log pi_theta(a) - log pi_old(a)) A) +
   entropy_coef * mean H(pi_theta)`` and its gradient ``g`` at the current
   parameters (advantages normalised over the batch if configured);
2. ``x ~= (F + cg_damping I)^-1 g`` by ``cg_iters`` conjugate-gradient
   iterations (``lax.while_loop``; stops early when the residual is tiny). ``F``
   is only touched through Fisher-vector products, computed as the
   Hessian-vector product of the mean KL by forward-over-reverse AD
   (``jvp`` of ``grad``) -- no explicit Fisher matrix;
3. full step ``x * sqrt(2 max_kl / x^T F x)`` (second-order KL = max_kl);
4. backtracking line search over ``coef^j`` (``j < line_search_steps``,
   ``lax.while_loop``) that accepts the first step with mean KL <= max_kl AND
   a strictly improved surrogate; if none qualifies, the old parameters are
   kept (``accepted = 0``).

KL direction: KL(pi_new || pi_old) per state, averaged over the batch -- the
same quantity every algorithm in tr_jax reports as ``kl_mean``. Its Hessian at
``theta_old`` (the Fisher) is the same for either direction.

Value function: ``value_epochs`` (default ``num_epochs``) x ``value_minibatches``
(default ``num_minibatches``) Adam steps (``value_lr``, linear decay, global-norm
clipping as configured) on the PPO value loss (optionally clipped), through
:func:`~tr_jax.algorithms.core.fit_value`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from tr_jax import distributions as D
from tr_jax import parallel as par
from tr_jax.algorithms.base import Algorithm, AlgoState, Batch
from tr_jax.algorithms.core import Critic, fit_value, normalize_advantage, policy_divergence, value_optimizer


def conjugate_gradient(matvec, b, iters: int, tol: float = 1e-10):
    """Solves ``A x = b`` for SPD ``A`` given only ``matvec(v) = A v``.

    Args:
      matvec: ``[P] -> [P]``.
      b: ``[P]``.
      iters: maximum iterations (static).
      tol: stop once ``r^T r < tol``.
    Returns:
      ``(x [P], r^T r, iterations used)``.
    """

    def cond(c):
        i, _, _, _, rr = c
        return (i < iters) & (rr > tol)

    def body(c):
        i, x, r, p, rr = c
        ap = matvec(p)
        alpha = rr / jnp.maximum(p @ ap, 1e-30)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        return i + 1, x, r, p, rr_new

    x0 = jnp.zeros_like(b)
    i, x, _, _, rr = jax.lax.while_loop(cond, body, (jnp.array(0), x0, b, b, b @ b))
    return x, rr, i


# The TrainConfig fields TRPO reads that not every algorithm does: tr_jax.config.validate refuses to set, sweep
# or search another algorithm's field (tests/algorithms/test_reads.py checks this against what make_trpo and its
# update read). TRPO has no policy optimiser: policy_lr is not among them.
READS = ("max_kl", "cg_iters", "cg_damping", "line_search_steps", "backtrack_coef")


def make_trpo(config, policy, value, axis_name=None) -> Algorithm:
    """Builds TRPO for ``config`` over a policy/value pair from :mod:`tr_jax.networks`.

    Uses config.cg_iters, cg_damping, line_search_steps, backtrack_coef,
    normalize_advantage and, for the value function, value_epochs (or
    num_epochs), value_minibatches (or num_minibatches), value_lr_decay (or lr_decay), lr_decay_steps,
    max_grad_norm, value_clip;
    max_kl, entropy_coef and value_lr come from the update's
    :class:`~tr_jax.hyperparams.Hyperparams`. With ``axis_name`` the policy
    step runs on each device's rows: gradients, Fisher-vector products and the
    line search's surrogate and KL are averaged over devices.
    """
    cov_type = policy.cov_type

    def init(policy_params, value_params):
        return AlgoState(
            policy_params, value_params, optax.EmptyState(), value_optimizer(config, config.value_lr).init(value_params)
        )

    def policy_step(params, batch: Batch, hp):
        max_kl = hp.max_kl
        flat0, unravel = ravel_pytree(params)
        adv = (
            normalize_advantage(batch.advantage, axis_name=axis_name) if config.normalize_advantage else batch.advantage
        )
        cur_mean, cur_scale = jax.lax.stop_gradient(policy.apply(params, batch.obs))

        def objective(flat):
            mean, scale = policy.apply(unravel(flat), batch.obs)
            ratio = jnp.exp(D.log_prob(batch.action, mean, scale, cov_type) - batch.log_prob)
            surr = jnp.mean(ratio * adv)
            ent = D.entropy(scale, cov_type).mean()
            return surr + hp.entropy_coef * ent, (mean, scale)  # (this device's rows)

        def kl_to_current(flat):  # anchored at the current policy: exactly 0 with zero gradient at flat0
            mean, scale = policy.apply(unravel(flat), batch.obs)
            return D.kl(mean, scale, cur_mean, cur_scale, cov_type).mean()

        def kl_to_old(mean, scale):  # the constraint, against the behaviour policy of the batch
            return D.kl(mean, scale, batch.old_mean, batch.old_scale, cov_type)

        grad_kl = jax.grad(kl_to_current)

        def fvp(v):
            return par.pmean(jax.jvp(grad_kl, (flat0,), (v,))[1], axis_name) + config.cg_damping * v

        (surr0, _), g = jax.value_and_grad(objective, has_aux=True)(flat0)
        surr0, g = par.pmean((surr0, g), axis_name)  # (one flat vector: one all-reduce)
        x, cg_res, cg_used = conjugate_gradient(fvp, g, config.cg_iters)
        xfx = x @ fvp(x)
        ok = jnp.isfinite(xfx) & (xfx > 0) & jnp.all(jnp.isfinite(x))
        step_scale = jnp.where(ok, jnp.sqrt(2.0 * max_kl / jnp.where(ok, xfx, 1.0)), 0.0)
        full_step = jnp.where(ok, step_scale * x, 0.0)
        expected = g @ full_step

        def try_step(j):
            frac = config.backtrack_coef ** j.astype(flat0.dtype)
            flat = flat0 + frac * full_step
            surr, (mean, scale) = objective(flat)
            surr, kl = par.pmean((surr, kl_to_old(mean, scale).mean()), axis_name)
            good = ok & (kl <= max_kl) & (surr > surr0) & jnp.isfinite(surr)
            return good, flat, surr, frac

        def cond(c):
            j, accepted = c[0], c[1]
            return (j < config.line_search_steps) & ~accepted

        def body(c):
            j = c[0]
            good, flat, surr, frac = try_step(j)
            return j + 1, good, flat, surr, frac

        init_c = (jnp.array(0), jnp.array(False), flat0, surr0, jnp.zeros((), flat0.dtype))
        tries, accepted, flat_new, surr_new, frac = jax.lax.while_loop(cond, body, init_c)
        flat_new = jnp.where(accepted, flat_new, flat0)
        surr_new = jnp.where(accepted, surr_new, surr0)
        metrics = {
            "accepted": accepted.astype(flat0.dtype),
            "line_search_tries": tries,
            "step_fraction": jnp.where(accepted, frac, 0.0),
            "step_size": jnp.where(accepted, frac * step_scale, 0.0),
            "step_norm": jnp.linalg.norm(flat_new - flat0),
            "surrogate_improvement": surr_new - surr0,
            "expected_improvement": expected,
            "policy_loss": -surr_new,
            "cg_residual": cg_res,
            "cg_iterations": cg_used,
            "grad_norm": jnp.linalg.norm(g),
        }
        return unravel(flat_new), metrics

    def update(key, state: AlgoState, batch: Batch, iteration, hp):
        del iteration
        local = par.local_rows(batch, axis_name)
        pp, pmetrics = policy_step(state.policy_params, local, hp)
        state, metrics = fit_value(
            key,
            state._replace(policy_params=pp),
            batch,
            config.num_value_epochs,
            config.num_value_minibatches,
            Critic(value.apply, config.value_clip, value_optimizer(config, hp.value_lr)),
            axis_name,
        )
        metrics.update(pmetrics)
        metrics.update(policy_divergence(policy, pp, local, axis_name))
        return state, metrics

    return Algorithm(init, update)
