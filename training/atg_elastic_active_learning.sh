#!/usr/bin/env bash
# Active learning for the elastic ensemble on the shipped case (docs/physics.md §1, cases/atg_film.toml): a base
# ensemble trained on the FEM-labelled dataset (round 0), then three capture -> retrain rounds.
#
#   bash training/atg_elastic_active_learning.sh [WORK_DIR]     # default WORK_DIR = data; about 80 min on 2 cores
#
# WORK_DIR/round3 is the shipped ensemble (hybrid/models/weights/atg_elastic; its model card names every file).
#
# Round r runs the case with the monitor on ensemble r-1 for several seeds the shipped case does not use (7),
# capturing every 10th FEM evaluation (fallbacks and audits) of each run into its own file, and retrains on the
# dataset plus all captures so far:
#   round 1: seeds 11, 12, 14, 15, 23, 24 to t = 250 (ripples, island formation, early coarsening); the base
#            ensemble falls back on most calls once grooves reach the wetting layer, so those profiles get captured;
#   round 2: seeds 13, 16-22 to t = 1000 with an audit every 20 steps: ensemble 1 is confident during coarsening,
#            so the audits are what samples that stage (the fallbacks alone would miss where it is confidently wrong);
#   round 3: seeds 41-48, as round 2 on ensemble 2. Ensemble 1 serves 97-98 % of the calls, so round 2 captures
#            few profiles (17 884 in all after round 2); round 3 adds 10 528 more.
# One capture run is one group (capture_block = 0), and the refinement rounds split the groups of each family
# separately (training.stratify = family): whole runs of different seeds are what is exchangeable between the
# calibration split, the test split and a new run, so the calibrated threshold and the test coverage are about
# runs the ensemble has not seen. (Blocks of one run are correlated: split into calibration and test they made the
# coverage depend on which few blocks fell where.) The last round calibrates group-conditionally
# (calibration.conditional = family): the coverage must hold in every family of the calibration split, not only in
# the mix, which a calibration split dominated by one well-predicted captured run would otherwise set. Round 2
# calibrates the same way, since its threshold decides what round 3 captures.
#
# Each step is skipped when its output exists, so an interrupted recipe continues. JOBS (default 2) capture runs
# go at once, each single-threaded. TRAIN_SET (default empty) adds training-spec overrides to every round, e.g.
# TRAIN_SET="training.epochs=60" (the earlier, shorter training); the default reproduces the shipped ensemble.
# The captures depend on the monitor's float32 decisions: on another machine they are statistically equivalent,
# not bitwise equal. Each capture file records its run (seed, parameters, the monitor's ensemble and its weights
# sha256) in its `spec` attribute, which `hybrid train` copies into the model card (`data.spec`).
set -euo pipefail
work=${1:-data}
jobs=${JOBS:-2}
train_set=()
for kv in ${TRAIN_SET:-}; do train_set+=(--set "$kv"); done
mkdir -p "$work/runs"   # runs/: the capture runs' own results and checkpoints
work=$(cd "$work" && pwd)   # weights paths in --set resolve against the case file's folder: make them absolute

step() { # OUTPUT COMMAND...: run COMMAND unless OUTPUT exists
    local target=$1
    shift
    if [ -e "$target" ]; then echo "== $target exists, skipped"; else echo "== $*"; "$@"; fi
}

capture() { # ROUND ENSEMBLE END AUDIT_EVERY SEED: one monitored run capturing into captureROUND_sSEED.h5
    local out="$work/capture$1_s$5.h5"
    [ -e "$out" ] && { echo "== $out exists, skipped"; return; }
    echo "== capture round $1 seed $5"
    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 hybrid run cases/atg_film.toml --no-plots --no-progress \
        --out "$work/runs/capture$1_s$5.h5" --set case.seed="$5" --set time.end="$3" \
        --set terms.elastic.weights="$2" --set terms.elastic.audit_every="$4" \
        --set terms.elastic.capture="$out.part" --set terms.elastic.capture_every=10 \
        --set terms.elastic.capture_block=0 > "$work/capture$1_s$5.log" 2>&1
    mv "$out.part" "$out"   # only a finished run counts
}
export -f capture
export work

refine() { # ROUND [--set ...]: retrain on the dataset and every capture file so far
    local round=$1
    shift
    local data=(--data "$work/atg_elastic.h5")
    for f in "$work"/capture*_s*.h5; do data+=(--data "$f"); done
    step "$work/round$round" hybrid train training/atg_elastic.toml --out "$work/round$round" \
        --set training.stratify=family "$@" ${train_set[@]+"${train_set[@]}"} "${data[@]}"
}

step "$work/atg_elastic.h5" hybrid dataset datasets/atg_elastic.toml --out "$work/atg_elastic.h5" --workers 2
step "$work/round0" hybrid train training/atg_elastic.toml --data "$work/atg_elastic.h5" --out "$work/round0" \
    ${train_set[@]+"${train_set[@]}"}

printf '%s\n' 11 12 14 15 23 24 | xargs -P "$jobs" -I{} bash -c "capture 1 '$work/round0' 250 1000 {}"
refine 1
printf '%s\n' 13 16 17 18 19 20 21 22 | xargs -P "$jobs" -I{} bash -c "capture 2 '$work/round1' 1000 20 {}"
refine 2 --set calibration.conditional=family
printf '%s\n' 41 42 43 44 45 46 47 48 | xargs -P "$jobs" -I{} bash -c "capture 3 '$work/round2' 1000 20 {}"
refine 3 --set calibration.conditional=family

hybrid info "$work/round3"
