#!/usr/bin/env bash
# The study in one command, every part resumable (run it again after a kill: finished runs are skipped,
# the others resume from their checkpoints), 5 seeds, 2M env steps per seed, the lr horizon the configs' 3M
# (lr_decay_steps), one shared critic (experiments/configs/_common.yaml). In this order, so that each of the three
# claims gets its first verdict (on hopper) as early as possible:
#   1. hopper x PPO, TRPL-KL and their minimal (-m) variants (claims 1 and 2);
#   2. contextual covariance on hopper: PPO and TRPL-KL with a state-dependent full covariance (claim 3);
#   3. walker2d x PPO and TRPL-KL (claim 1 on a second env);
#   4. hopper x TRPL-KL's regression coefficient (experiments/sensitivity.sh's trust_region_coef sweep: does the
#      regression loss keep the acting network output inside the trust region?);
#   5. walker2d x the -m variants of PPO and TRPL-KL (claim 2 on a second env);
#   6. hopper x TRPL-Frob(-m), TRPO, TRPL-W2 (hopper's main table complete);
#   7. contextual covariance on hopper, diagonal (claim 3 with a second covariance type);
#   8. walker2d x TRPO (claim 1 against TRPO on a second env);
#   9. hopper's bound sensitivity (eps_mean and clip_ratio sweeps, 3 seeds, 1M steps);
#  10. walker2d x TRPL-Frob(-m), TRPL-W2, then walker2d's bound sensitivity.
# Each compare step rewrites OUT/results.md with its own rows; the study's tables and figures are made by
# experiments/study_export.py and experiments/study_report.py (docs/results.md).
#   experiments/study.sh [OUT [compare options...]]   (default OUT: results/study; e.g. OUT --report-only)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-results/study}"

step() {  # stops the study on a signal (75/130: the next call resumes) or bad arguments (2); goes on after a
    "$@"  # diverged or failed run (1), which the report shows
    local rc=$?
    case $rc in 0|1) ;; *) exit $rc ;; esac
}

compare() {
    step nice -n 10 python3 experiments/compare.py --seeds 5 --env-steps 2000000 --out "$OUT" --progress lines "$@"
}

compare --envs hopper --setups ppo trpl-kl ppo-m trpl-kl-m "${@:2}"
compare --envs hopper --setups ppo-ctx-full trpl-kl-ctx-full "${@:2}"
compare --envs walker2d --setups ppo trpl-kl "${@:2}"
case " ${*:2} " in *" --report-only "*) ;; *) SWEEPS=trust_region_coef step experiments/sensitivity.sh "$OUT" hopper ;; esac
compare --envs walker2d --setups ppo-m trpl-kl-m "${@:2}"
compare --envs hopper --setups trpl-frob trpl-frob-m trpo trpl-w2 "${@:2}"
compare --envs hopper --setups ppo-ctx-diag trpl-kl-ctx-diag "${@:2}"
compare --envs walker2d --setups trpo "${@:2}"
case " ${*:2} " in *" --report-only "*) ;; *) SWEEPS="eps_mean clip_ratio" step experiments/sensitivity.sh "$OUT" hopper ;; esac
compare --envs walker2d --setups trpl-frob trpl-frob-m trpl-w2 "${@:2}"
case " ${*:2} " in *" --report-only "*) ;; *) SWEEPS="eps_mean clip_ratio" step experiments/sensitivity.sh "$OUT" walker2d ;; esac
