"""``SamplingPointsVisualizationHook``: the deformable attention's sampling
points of a few fixed validation images (paper Figure 6) in the dashboards
(TensorBoard and the local visualiser backend) at every validation, so a
user sees where the model learns to look."""
from pathlib import Path
from typing import Sequence

import mmcv
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ddetr_plugin.registry import HOOKS
from ddetr_plugin.visualization.sampling_points import (
    capture_sampling_points, sampling_point_figures)


@HOOKS.register_module()
class SamplingPointsVisualizationHook(Hook):
    """After each validation, draw the sampling points of the validation
    images ``image_indices`` (paper Figure 6, see
    :func:`~ddetr_plugin.visualization.sampling_points.sampling_point_figures`)
    and add them to the runner's visualiser as
    ``sampling_points_<image stem>_<figure>``, step = epoch (no ``/``:
    mmengine's ``LocalVisBackend`` writes the name as a file name).

    Off unless a config lists it in ``custom_hooks``.

    Args:
        image_indices (Sequence[int]): indices into the validation dataset.
        layer (int): decoder layer (Python index, -1 = last).
        topk (int): detections drawn per image.

    Raises:
        ValueError: an empty ``image_indices`` or ``topk < 1``.
    """

    priority = 'LOW'

    def __init__(self, image_indices: Sequence[int] = (0, ),
                 layer: int = -1, topk: int = 3) -> None:
        if not image_indices or topk < 1:
            raise ValueError('SamplingPointsVisualizationHook needs '
                             'image_indices and topk >= 1, got '
                             f'{image_indices} and {topk}')
        self.image_indices = list(image_indices)
        self.layer = layer
        self.topk = topk

    def after_val_epoch(self, runner, metrics=None) -> None:
        """Draw and log the pictures (main process only)."""
        if not is_main_process():
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        dataset = runner.val_dataloader.dataset
        classes = dataset.metainfo['classes']
        was_training = model.training
        model.eval()
        for index in self.image_indices:
            item = dataset[index]
            data = model.data_preprocessor(
                dict(inputs=[item['inputs']],
                     data_samples=[item['data_samples']]),
                training=False)
            sample = data['data_samples'][0]
            captured = capture_sampling_points(
                model, data['inputs'], sample, self.topk)
            image = mmcv.imread(sample.img_path, channel_order='rgb')
            figures = sampling_point_figures(image, captured, classes,
                                             self.layer)
            stem = Path(sample.img_path).stem
            for name, figure in figures.items():
                runner.visualizer.add_image(
                    f'sampling_points_{stem}_{name}', figure,
                    step=runner.epoch)
        model.train(was_training)
