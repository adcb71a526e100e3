#!/usr/bin/env bash
# The comparison of issue 18 (main table and implementation-choices ablation) in one command: hopper and
# walker2d x PPO, TRPO, TRPL-KL, TRPL-Frob, TRPL-W2 and the minimal (-m) variants, 5 seeds, 2M env steps each
# (the lr horizon stays the configs' 3M, lr_decay_steps), one shared critic (experiments/configs/_common.yaml).
# Setups run in this order (env-major), the cells of the main claims first.
# Resumable: run it again after a kill and it skips finished runs and resumes the others from their checkpoints.
#   experiments/study.sh [OUT [compare options...]]   (default OUT: results/study; e.g. OUT --report-only)
set -euo pipefail
cd "$(dirname "$0")/.."
exec nice -n 10 python3 experiments/compare.py --envs hopper walker2d \
    --setups ppo trpl-kl ppo-m trpl-kl-m trpl-frob trpl-frob-m trpo trpl-w2 \
    --seeds 5 --env-steps 2000000 --out "${1:-results/study}" --progress lines "${@:2}"
