"""Trust-region projection layers (TRPL) as an :class:`~tr_jax.algorithms.base.Algorithm`, built from the
public building blocks of :mod:`tr_jax.losses`.

Per minibatch (``num_epochs`` x ``num_minibatches`` Optax steps through
:func:`~tr_jax.algorithms.core.actor_critic_epochs`; the value function takes
``value_epochs`` x ``value_minibatches``, after the policy epochs when the counts
differ), with the network output
p~ = (mu~, A~) and the behaviour policy q = (mu_o, A_o) of each state:

    p    = entropy_projection(project(config.projection, p~, q, eps_mean, eps_cov), beta_t)
    L_pg = -mean(exp(log p(a) - log q(a)) A)                  (no clipping)
    L_tr = mean(mean_part + cov_part)(p~, stop_gradient(p))  (the projection's own distance)
    L    = L_pg + trust_region_coef * L_tr - entropy_coef * mean H(p) + value loss

The projection is applied per state; only the projected policy p enters the
surrogate, so every gradient step sees a policy inside the trust region.
``extra_regression_steps`` further Optax steps on ``L_tr`` alone (random
minibatches) follow the policy epochs: with the policy optimiser, or with
``regression_lr`` set, with an Adam of their own at that lr whose state
persists across updates in ``AlgoState.extra["regression_opt"]``. For a global (non-contextual)
covariance, the mean over states of the projected scale is then written back
into the covariance parameter (``policy.set_global_scale``), so the acting
covariance is the projected one exactly.

Scale parameterisations handed to the projection (``projection_cov_type``):

* diag policy: std vectors, for every projection;
* full policy: lower Cholesky for "kl"/"frob" (W2 with a full policy is
  rejected: it needs the symmetric sqrt, use ``cov_type="sqrt"``);
* sqrt policy: the symmetric sqrt S for "w2"; for "kl"/"frob" it is converted
  to the Cholesky factor of Sigma = S S (``distributions.cholesky``,
  differentiable), and projected, log-probs, parts and KL are computed in the
  Cholesky parameterisation. For the global write-back the projected Cholesky
  factor is turned back into a symmetric sqrt (eigendecomposition on one
  k x k matrix, no gradient).

Entropy control (``entropy_schedule`` "linear"/"exp", see
:func:`tr_jax.losses.entropy_bound`): the entropy projection is applied
after the trust-region projection, as in the paper; its anchor H0 (the
entropy of N(., init_std^2 I), exact for networks from
:func:`tr_jax.networks.make_policy`) lives in ``AlgoState.extra``. The entropy
projection can move the policy back out of the covariance trust region (it
rescales the covariance); the reported cov parts include that effect.

Metrics (after the update, on the full batch; "projected" = the policy p the
update optimised, "acting" = the network output p~ that the next rollout acts
with; KL is KL(new || old), as for PPO and TRPO):
  kl_mean, kl_max: KL(p || q) mean/max over states;
  mean_part_mean/max/over, cov_part_mean/max/over: the projection's own
    distance parts between q and p, mean and max over states and the fraction
    of states above the bound (``over``, see :func:`bound_metrics`) -- never
    above eps_mean / eps_cov (solver tolerance) without an entropy schedule;
  acting_kl_mean/max, acting_mean_part_mean/max/over, acting_cov_part_mean/max/over:
    the same for the acting policy p~ (after the global covariance write-back).
    These are what the trust region is about: p~ is not projected, and only
    the regression loss (trust_region_coef, extra_regression_steps) pulls it
    towards p, so its parts can exceed the bounds. ``acting_kl_*`` is the
    metric PPO and TRPO report under the same name (their policy acts). Runs
    written before these names called them ``raw_*``; readers rename them
    (:func:`tr_jax.rundir.current_metric_names`);
  entropy (of p), entropy_bound (beta_t; only with a schedule),
  policy_loss, trust_region_loss, value_loss (means over minibatches),
  regression_loss (mean over the extra steps; 0 without them).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from tr_jax import distributions as D
from tr_jax import parallel as par
from tr_jax.algorithms.base import Algorithm, AlgoState, Batch
from tr_jax.algorithms.core import (
    Critic,
    actor_critic_epochs,
    epoch_schedule,
    kl_metrics,
    make_optimizer,
    normalize_advantage,
    value_optimizer,
)
from tr_jax.losses import (
    entropy_bound,
    gaussian_entropy,
    global_scale,
    project_gaussians,
    projection_cov_type,
    to_projection_scale,
    trpl_surrogate,
    trust_region_loss,
)
from tr_jax.projections import canonical_name, parts

# relative slack of "inside the bound": the KL solver meets its bounds to ~1e-5 (5e-3 at eps 1e-6)
BOUND_TOLERANCE = 1e-2


def bound_metrics(prefix: str, mean_part: jax.Array, cov_part: jax.Array, eps_mean, eps_cov, axis_name=None) -> dict:
    """Per-state trust-region distances against their bounds, over the states of a batch (of every device).

    Args:
      prefix: of the metric names ("" for the projected policy, "acting_" for the network output).
      mean_part, cov_part: ``[n]`` the projection's mean and covariance distance per state.
      eps_mean, eps_cov: the bounds (scalars).
    Returns:
      ``{prefix}mean_part_mean``, ``_max`` (mean and max over states), ``_over`` (the fraction of states
      with ``part > eps * (1 + BOUND_TOLERANCE)``: strictly above the bound beyond the solver's tolerance),
      and the same three for ``cov_part``; scalars.
    """
    out = {}
    for part, x, eps in (("mean_part", mean_part, eps_mean), ("cov_part", cov_part, eps_cov)):
        over = (x > eps * (1 + BOUND_TOLERANCE)).astype(x.dtype)
        out.update(
            {
                f"{prefix}{part}_mean": par.mean(x, axis_name),
                f"{prefix}{part}_max": par.max(x, axis_name),
                f"{prefix}{part}_over": par.mean(over, axis_name),
            }
        )
    return out


# The TrainConfig fields TRPL reads that not every algorithm does: tr_jax.config.validate refuses to set, sweep
# or search another algorithm's field (tests/algorithms/test_reads.py checks this against what make_trpl and its
# update read).
READS = (
    "eps_mean",
    "eps_cov",
    "trust_region_coef",
    "policy_lr",
    "projection",
    "scale_prec",
    "entropy_schedule",
    "target_entropy",
    "entropy_temperature",
    "entropy_equality",
    "extra_regression_steps",
    "regression_lr",
)


def make_trpl(config, policy, value, axis_name=None) -> Algorithm:
    """Builds TRPL for ``config`` over a policy/value pair from :mod:`tr_jax.networks`.

    Uses config.projection, scale_prec, entropy_schedule, target_entropy,
    entropy_temperature, entropy_equality, extra_regression_steps,
    normalize_advantage, num_epochs, value_epochs, num_minibatches, value_minibatches, lr_decay,
    value_lr_decay, lr_decay_steps, max_grad_norm, value_clip; eps_mean, eps_cov, trust_region_coef,
    entropy_coef, policy_lr and value_lr come from the update's
    :class:`~tr_jax.hyperparams.Hyperparams`.
    """
    name = canonical_name(config.projection)
    proj_cov_type = projection_cov_type(policy.cov_type, name)
    options = (
        {"cov_type": proj_cov_type} if name == "kl" else {"cov_type": proj_cov_type, "scale_prec": config.scale_prec}
    )
    schedule = config.entropy_schedule
    num_mb = config.num_minibatches
    n_reg = config.extra_regression_steps
    own_reg_opt = config.regression_lr is not None
    policy_steps = config.num_epochs * num_mb + (0 if own_reg_opt else n_reg)
    reg_opt = make_optimizer(config, config.regression_lr, n_reg, False) if own_reg_opt else None

    def to_proj(scale):
        """Policy scale -> projection scale ([..., k] or [..., k, k])."""
        return to_projection_scale(scale, policy.cov_type, name)

    def project_policy(pp, obs, old_mean, old_scale, beta, hp):
        """Returns ((mu, A), (mu~, A~)): the projection and the network output it projects, both in
        proj_cov_type (``old_scale`` in the policy's cov_type), in :func:`project_gaussians`' order."""
        mean, scale = policy.apply(pp, obs)
        projected, raw = project_gaussians(
            name,
            mean,
            scale,
            old_mean,
            old_scale,
            hp.eps_mean,
            hp.eps_cov,
            cov_type=policy.cov_type,
            entropy_bound=None if schedule == "none" else beta,
            entropy_equality=config.entropy_equality,
            scale_prec=config.scale_prec,
        )
        return projected, raw

    def tr_loss(raw, proj):
        return trust_region_loss(name, raw, proj, cov_type=policy.cov_type, scale_prec=config.scale_prec)

    def init(policy_params, value_params):
        dtype = jax.tree.leaves(policy_params)[0].dtype
        h0 = jnp.asarray(gaussian_entropy(policy.action_dim, config.init_std), dtype)
        return AlgoState(
            policy_params,
            value_params,
            make_optimizer(config, config.policy_lr, policy_steps, config.lr_decay).init(policy_params),
            value_optimizer(config, config.value_lr).init(value_params),
            {"initial_entropy": h0, **({"regression_opt": reg_opt.init(policy_params)} if reg_opt else {})},
        )

    def loss_fn(pp, mb: Batch, beta, hp):
        (pm, ps), raw = project_policy(pp, mb.obs, mb.old_mean, mb.old_scale, beta, hp)
        adv = normalize_advantage(mb.advantage, axis_name=axis_name) if config.normalize_advantage else mb.advantage
        pg_loss = trpl_surrogate(D.log_prob(mb.action, pm, ps, proj_cov_type), mb.log_prob, adv)
        trl = tr_loss(raw, (pm, ps))
        entropy = D.entropy(ps, proj_cov_type).mean()
        total = pg_loss + hp.trust_region_coef * trl - hp.entropy_coef * entropy
        return total, {"policy_loss": pg_loss, "trust_region_loss": trl}

    def update(key, state: AlgoState, batch: Batch, iteration, hp):
        beta = entropy_bound(
            schedule,
            state.extra["initial_entropy"],
            config.target_entropy,
            config.entropy_temperature,
            iteration,
            config.num_iterations,
        )
        key_epochs, key_reg = jax.random.split(key)
        policy_opt = make_optimizer(config, hp.policy_lr, policy_steps, config.lr_decay)
        state, metrics = actor_critic_epochs(
            key_epochs,
            state,
            batch,
            epoch_schedule(config),
            lambda pp, mb: loss_fn(pp, mb, beta, hp),
            policy_opt,
            Critic(value.apply, config.value_clip, value_optimizer(config, hp.value_lr)),
            axis_name,
        )
        pp, vp, po, vo = state.policy_params, state.value_params, state.policy_opt, state.value_opt
        extra = state.extra

        if n_reg > 0:
            opt, ro = (reg_opt, extra["regression_opt"]) if reg_opt else (policy_opt, po)

            n = batch.obs.shape[0]
            size = n // num_mb

            def reg_step(c, k):
                pp, po = c
                idx = par.local_rows(jax.random.choice(k, n, (size,), replace=False), axis_name)
                mb = jax.tree.map(lambda x: x[idx], batch)

                def reg_loss(p):
                    proj, raw = project_policy(p, mb.obs, mb.old_mean, mb.old_scale, beta, hp)
                    return tr_loss(raw, proj)

                loss, g = jax.value_and_grad(reg_loss)(pp)
                u, po = opt.update(par.mean_grads(g, axis_name), po, pp)
                return (optax.apply_updates(pp, u), po), loss

            (pp, ro), reg = jax.lax.scan(reg_step, (pp, ro), jax.random.split(key_reg, n_reg))
            if reg_opt:
                extra = {**extra, "regression_opt": ro}
            else:
                po = ro
            metrics["regression_loss"] = par.mean(reg, axis_name)
        else:
            metrics["regression_loss"] = jnp.zeros_like(metrics["policy_loss"])

        # One projection of the full batch serves the global write-back and the metrics: writing the
        # projected covariance back leaves the projected policy unchanged (its covariance is then inside).
        # With data parallelism each device takes its own rows; the write-back mean is over all of them.
        batch = par.local_rows(batch, axis_name)
        proj, raw = project_policy(pp, batch.obs, batch.old_mean, batch.old_scale, beta, hp)
        if not policy.contextual:
            pp = policy.set_global_scale(
                pp, global_scale(proj[1], cov_type=policy.cov_type, projection=name, axis_name=axis_name)
            )
            mean, scale = policy.apply(pp, batch.obs)
            raw = (mean, to_proj(scale))
        metrics.update(_final_metrics(raw, proj, batch._replace(old_scale=to_proj(batch.old_scale)), hp))
        if schedule != "none":  # (-inf otherwise; the training loop treats non-finite metrics as divergence)
            metrics["entropy_bound"] = beta
        return AlgoState(pp, vp, po, vo, extra), metrics

    def _final_metrics(raw, proj, batch: Batch, hp):
        (rm, rs), (pm, ps) = raw, proj
        mp, cp = parts(name, pm, ps, batch.old_mean, batch.old_scale, **options)
        rmp, rcp = parts(name, rm, rs, batch.old_mean, batch.old_scale, **options)
        if name == "kl":  # the KL parts are the KL decomposition
            kl, raw_kl = mp + cp, rmp + rcp
        else:
            kl = D.kl(pm, ps, batch.old_mean, batch.old_scale, proj_cov_type)
            raw_kl = D.kl(rm, rs, batch.old_mean, batch.old_scale, proj_cov_type)
        avg = lambda x: par.mean(x, axis_name)
        return {
            **kl_metrics(kl, raw_kl, axis_name),
            **bound_metrics("", mp, cp, hp.eps_mean, hp.eps_cov, axis_name),
            **bound_metrics("acting_", rmp, rcp, hp.eps_mean, hp.eps_cov, axis_name),
            "entropy": avg(D.entropy(ps, proj_cov_type)),
        }

    return Algorithm(init, update)
