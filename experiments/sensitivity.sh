#!/usr/bin/env bash
# Bound sensitivity, the sweep design: per env, ONE vmapped program per setup sweeps its bound
# (TRPL-KL: eps_mean = 0.01, 0.03, 0.1, 0.3; PPO, for the same tuning budget: clip_ratio = 0.1, 0.2, 0.3) x 3 seeds
# at 1M env steps each (the lr horizon stays the configs' 3M, lr_decay_steps); on hopper also TRPL-KL's regression
# coefficient trust_region_coef = 1, 8, 32 (1: the shipped value; 8: the reference's contextual config). Everything
# else is the study's config.
# Writes OUT/sensitivity/runs/<env>/<setup>-<key>/ (a sweep directory: sweep.json and one run directory per setting,
# e.g. eps_mean=0.01/), which experiments/study_export.py and experiments/study_report.py read.
# Resumable: run it again after a kill; a finished sweep is left as it is, a started one resumes from its
# checkpoints, one killed before its first checkpoint starts again.
#   experiments/sensitivity.sh [OUT [ENV ...]]     (default OUT: results/study; ENVs: hopper walker2d)
#   SWEEPS=trust_region_coef experiments/sensitivity.sh OUT hopper    (only the sweeps of these keys)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-results/study}/sensitivity/runs"
ENVS=("${@:2}")
[ ${#ENVS[@]} -eq 0 ] && ENVS=(hopper walker2d)
STEPS="${STEPS:-1000000}"  # env overrides, for a quick check: STEPS, SEEDS, CONFIGS (a tree of ENV/SETUP.yaml)
SEEDS="${SEEDS:-3}"
CONFIGS="${CONFIGS:-experiments/configs}"
SWEEPS="${SWEEPS:-eps_mean clip_ratio trust_region_coef}"  # the sweeps to run, by the key they sweep
status=0

sweep() {  # env setup key values
    local dir="$OUT/$1/$2-$3" args
    case " $SWEEPS " in *" $3 "*) ;; *) return ;; esac
    if [ -f "$dir/sweep.json" ] && compgen -G "$dir/*/checkpoints/*" > /dev/null; then
        args=(--resume "$dir")
    else  # new, or killed before a checkpoint (--overwrite empties only a sweep directory)
        args=("$CONFIGS/$1/$2.yaml" --set "total_env_steps=$STEPS" --sweep "$3=$4" --seeds "$SEEDS"
              --run-dir "$dir" --overwrite)
    fi
    echo "== sensitivity $1 / $2: $3 = $4 ($dir)"
    PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" nice -n 10 python3 -m tr_jax train "${args[@]}" --progress lines
    local rc=$?
    case $rc in
        0) ;;
        75|130|143) exit $rc ;;  # stopped by a signal (checkpoint written where possible): the next call resumes
        *) status=1 ;;  # diverged or failed: the other sweeps still run
    esac
}

for env in "${ENVS[@]}"; do
    sweep "$env" trpl-kl eps_mean 0.01,0.03,0.1,0.3
    sweep "$env" ppo clip_ratio 0.1,0.2,0.3
done
# the regression coefficient (the paper's mechanism that keeps the acting network output near its projection),
# hopper only: what it does to the acting policy's bound use and to the score
for env in "${ENVS[@]}"; do
    [ "$env" = hopper ] && sweep hopper trpl-kl trust_region_coef 1,8,32
done
exit $status
