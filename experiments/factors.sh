#!/usr/bin/env bash
# "Why TRPL trails" (docs/results.md, the pre-registered section) in one command, every part resumable (run it
# again after a kill: finished runs are skipped, the others resume from their checkpoints). In the pre-registered
# order, with the study's protocol (experiments/study.sh: 5 seeds per program, 2M env steps, the configs' 3M lr
# horizon, the shared critic):
#   1. hopper x the H1 cells (trpl-kl-ppo-optim, ppo-trpl-optim), base seed 0;
#   2. hopper x ppo, trpl-kl and the H1 cells at base seed 100 (OUT/seed100: 5 more seeds each, 10 in all);
#   3. hopper x H2 (trpl-kl-anneal) and H3 (trpl-kl-reg), base seed 0;
#   4. halfcheetah x ppo, trpl-kl, ppo-m, trpl-kl-m, trpo (claims 1 and 2 on a third env);
#   5. the paper's budget: hopper and walker2d x ppo, trpl-kl, trpo at 3,000,320 env steps (OUT/budget3m);
#   6. walker2d's bound sweeps (experiments/sensitivity.sh).
# The tables and figures: experiments/study_export.py OUT, then experiments/study_report.py.
#   experiments/factors.sh [OUT]     (default OUT: results/study, the study's own output directory)
# On a new machine, continue from the raw runs packed at the last stop (every run's files, the newest checkpoint
# of each unfinished run, no checkpoint of a finished one; finished runs are skipped, the others resume):
#   mkdir -p results/study && tar xzf experiments/study/in_progress.tar.gz -C results/study && experiments/factors.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-results/study}"

step() {  # stops on a signal (75/130/143: the next call resumes) or bad arguments (2); goes on after a diverged
    "$@"  # or failed run (1), which the report shows
    local rc=$?
    case $rc in 0|1) ;; *) exit $rc ;; esac
}

compare() {
    step nice -n 10 python3 experiments/compare.py --seeds 5 --env-steps 2000000 --out "$OUT" --progress lines "$@"
}

compare --envs hopper --setups trpl-kl-ppo-optim ppo-trpl-optim
compare --envs hopper --setups ppo trpl-kl trpl-kl-ppo-optim ppo-trpl-optim --seed 100 --out "$OUT/seed100"
compare --envs hopper --setups trpl-kl-anneal trpl-kl-reg
compare --envs halfcheetah --setups ppo trpl-kl ppo-m trpl-kl-m trpo
compare --envs hopper walker2d --setups ppo trpl-kl trpo --env-steps 3000320 --out "$OUT/budget3m"
SWEEPS="eps_mean clip_ratio" step experiments/sensitivity.sh "$OUT" walker2d
