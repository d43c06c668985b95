#!/usr/bin/env bash
# Evaluate CHECKPOINT on NUM_PROCS processes per node with torchrun and
# mmengine's `pytorch` launcher (tools/test.py --launcher pytorch). Every
# process tests a share of the images; the results are gathered on rank 0,
# each image once, and evaluated there (the same metrics as one process).
#
# usage: tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [tools/test.py arguments]
#   e.g. tools/dist_test.sh CONFIG work_dirs/run/epoch_50.pth 8 --out preds.pkl
# several nodes: as tools/dist_train.sh (NNODES, NODE_RANK, MASTER_ADDR,
#   PORT, PYTHON), which starts the processes.
set -euo pipefail
if [ $# -lt 3 ]; then
    sed -n '2,12p' "$0" >&2
    exit 2
fi
TOOL=test.py exec bash "$(dirname "$0")/dist_train.sh" "$1" "$3" "$2" "${@:4}"
