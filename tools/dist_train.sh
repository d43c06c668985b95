#!/usr/bin/env bash
# Train on NUM_PROCS processes per node with torchrun and mmengine's
# `pytorch` launcher (tools/train.py --launcher pytorch). One process per GPU
# with CUDA (nccl), or CPU processes (gloo); see docs/distributed.md.
#
# usage: tools/dist_train.sh CONFIG NUM_PROCS [tools/train.py arguments]
#   e.g. tools/dist_train.sh configs/deformable_detr/deformable-detr_r50_16xb2-50e_coco.py 8 --resume
# several nodes: run it on every node with the same NNODES, MASTER_ADDR and
# PORT and that node's NODE_RANK (0 .. NNODES-1):
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 tools/dist_train.sh CONFIG 8
# environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1),
#   PORT (29500), PYTHON (python); TOOL (train.py; dist_test.sh sets test.py)
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,16p' "$0" >&2
    exit 2
fi
CONFIG=$1
NUM_PROCS=$2
TOOLS=$(dirname "$0")
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$NUM_PROCS" \
    "$TOOLS/${TOOL:-train.py}" "$CONFIG" "${@:3}" --launcher pytorch
