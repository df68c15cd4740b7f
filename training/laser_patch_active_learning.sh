#!/usr/bin/env bash
# The shipped patch surrogate of the laser track (docs/laser.md): two cfd-labelled data files, a round-0 surrogate
# trained on them, and an active-learning round on the states a surrogate-coupled run visits.
#
#   bash training/laser_patch_active_learning.sh [OUT]   # about 40 min on 2 cores; data into data/,
#                                                         # the surrogate into OUT (default: the shipped one)
#
# 1. data/laser_patch.h5: coarse runs without hand-back, each captured coarse patch labelled by cfd on the same state.
# 2. data/laser_patch_coupled.h5: runs handing the cfd patch back at every step.
# 3. data/laser_patch_round0: the surrogate trained on 1 and 2.
# 4. data/laser_patch_monitor_coupled.h5: runs handing round 0's monitored surrogate back at every step, labelled
#    by cfd (datasets/laser_patch_monitor_coupled.toml names data/laser_patch_round0, relative to cases/). In such a
#    loop the surrogate's own pools become its next inputs; the cfd-coupled data alone leave that loop a constant bias.
# 5. data/laser_patch_startup.h5: the same loop's first 5 steps after the laser is switched on (round 0's monitor
#    answers them by cfd, 0.7 s a call).
# 6. The shipped surrogate: trained on 1, 2, 4 and 5 (hybrid/models/weights/laser_patch; its model card names every
#    data file and its SHA-256).
#
# Each step is skipped when its output exists, so an interrupted recipe continues. Training is deterministic, so
# rerunning it reproduces the weights; the data of step 4 depend on round 0's float32 answers (on another machine:
# statistically equivalent, not bitwise equal).
set -euo pipefail
out=${1:-hybrid/models/weights/laser_patch}

step() { # OUTPUT COMMAND...: run COMMAND unless OUTPUT exists
    local target=$1
    shift
    if [ -e "$target" ]; then echo "== $target exists, skipped"; else echo "== $*"; "$@"; fi
}

mkdir -p data
step data/laser_patch.h5 hybrid dataset datasets/laser_patch.toml --out data/laser_patch.h5 --workers 2
step data/laser_patch_coupled.h5 hybrid dataset datasets/laser_patch_coupled.toml --out data/laser_patch_coupled.h5 \
    --workers 2
# round 0 has the earlier sizes (codes of 8 and 16 numbers): the surrogate whose loop step 4 samples
step data/laser_patch_round0 hybrid train training/laser_patch.toml --data data/laser_patch.h5 \
    --data data/laser_patch_coupled.h5 --out data/laser_patch_round0 --set model.coarse_latent=8 --set model.latent=16
step data/laser_patch_monitor_coupled.h5 hybrid dataset datasets/laser_patch_monitor_coupled.toml \
    --out data/laser_patch_monitor_coupled.h5 --workers 2
step data/laser_patch_startup.h5 hybrid dataset datasets/laser_patch_startup.toml --out data/laser_patch_startup.h5 \
    --workers 2
hybrid train training/laser_patch.toml --data data/laser_patch.h5 --data data/laser_patch_coupled.h5 \
    --data data/laser_patch_monitor_coupled.h5 --data data/laser_patch_startup.h5 --out "$out" --overwrite
hybrid info "$out"
