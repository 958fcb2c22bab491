#!/bin/sh
# The accuracy runs behind README's MCC table (seed 0, finger 2; a few
# minutes each on 2 cores). Scores and JSON go to results/mcc/.
set -e
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD"
PY=${PY:-.venv/bin/python}
mkdir -p results/mcc
for run in "rolled mix" "rolled 2" "plain mix" "plain 2" "rolled 1"; do
    set -- $run
    name=p$(echo "$1" | cut -c1)_q$2
    $PY -m fpscale.bench.tools.matcher_eval accuracy --probe plain --gallery "$1" --quality "$2" \
        --save "results/mcc/$name.npz" > "results/mcc/$name.json"
done
$PY -m fpscale.bench.tools.matcher_eval cross --scores results/mcc/pr_qmix.npz results/mcc/pp_qmix.npz > results/mcc/cross_mix.json
$PY -m fpscale.bench.tools.matcher_eval cross --scores results/mcc/pr_q2.npz results/mcc/pp_q2.npz > results/mcc/cross_q2.json
$PY -m fpscale.bench.tools.matcher_eval failures --scores results/mcc/pr_qmix.npz --quality mix > results/mcc/failures_pr_mix.json
# target S with the best-2012 profile's capture settings
$PY -m fpscale.bench.tools.matcher_eval accuracy --probe plain --gallery rolled --quality mix \
    --profile best-2012 --save results/mcc/pr_qmix_best2012.npz > results/mcc/pr_qmix_best2012.json
