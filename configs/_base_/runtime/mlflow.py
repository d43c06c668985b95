# MLflow tracking for any of our configs (docs/dashboards.md): the resolved
# config as the run's parameters, every loss and COCO metric (per-class AP
# included) of every logging step and validation, per-class
# precision-recall curves at every validation (TensorBoard's PR-curve tab,
# a picture in the log folder and in MLflow), and, when the run ends, the
# logs, configs, scalars.json and the best checkpoint as artifacts.
#
# mmengine refuses two bases that define the same key, and every full
# config already defines `visualizer`, `default_hooks` and `val_evaluator`
# (default_runtime.py, the dataset configs). So this file defines names of
# its own only: a config inherits it beside its model config and wires it
# with three lines (dicts merge into the inherited ones; only the backend
# list is replaced):
#
#   _base_ = [
#     '../deformable_detr/deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py',
#     '../_base_/runtime/mlflow.py'
#   ]
#   visualizer = dict(vis_backends=_base_.mlflow_vis_backends)
#   default_hooks = dict(pr_curves=_base_.mlflow_pr_curve_hook)
#   val_evaluator = _base_.mlflow_val_evaluator
#
# The server: `mlflow server --host 127.0.0.1 --port 5000
# --backend-store-uri sqlite:///mlflow.db` (pip install
# 'ddetr_plugin[mlflow]'). The tracking URI and the experiment come from
# $MLFLOW_TRACKING_URI and $MLFLOW_EXPERIMENT_NAME when the config is
# loaded, else the defaults below. A server that does not answer at the
# start stops the run before training with one error naming the URI; one
# that stops answering later never stops training (one warning; every
# value stays in scalars.json and TensorBoard).

# ddetr_plugin's ResilientMLflowVisBackend: mmengine's MLflowVisBackend
# (same arguments) plus the start-up check, survival of a lost server and
# `artifact_patterns` (ddetr_plugin/visualization/mlflow_vis_backend.py)
mlflow_vis_backend = dict(
    type='ResilientMLflowVisBackend',
    tracking_uri='{{$MLFLOW_TRACKING_URI:http://127.0.0.1:5000}}',
    exp_name='{{$MLFLOW_EXPERIMENT_NAME:ddetr_plugin}}',
    run_name=None,  # None: MLflow generates one
    tags=None,
    params=None,
    # None: the whole resolved config, flattened (`model.backbone.type`)
    tracked_config_keys=None,
    # uploaded from the work dir when the run ends (mmengine's default)
    artifact_suffix=('.json', '.log', '.py', 'yaml'),
    # ... and these glob patterns: the best checkpoint of the checkpoint
    # hook's save_best (the BCCD demo: save_best='coco/bbox_mAP')
    artifact_patterns=('best_*.pth', ),
    connect_timeout=5.0,  # the start-up check and each reconnection try
    retry_interval=60.0)  # after the server stopped answering
# TensorBoard and scalars.json stay: they keep every value when MLflow
# cannot
mlflow_vis_backends = [
    dict(type='LocalVisBackend'),
    dict(type='TensorboardVisBackend'), mlflow_vis_backend
]
# per-class precision-recall curves at IoU 0.5 and 0.5:0.95 at every
# validation, to each backend (ddetr_plugin/engine/hooks/pr_curve_hook.py)
mlflow_pr_curve_hook = dict(type='PRCurveHook', ious=(0.5, None))
# mmdet's CocoMetric (its arguments merge with the dataset config's) that
# keeps COCO's precision array for the curves; classwise=True adds each
# class's AP (coco/<class>_precision) to the logged metrics
mlflow_val_evaluator = dict(type='CocoMetricWithPRCurves', classwise=True)
