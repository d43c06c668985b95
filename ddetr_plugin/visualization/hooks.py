"""Validation pictures for the dashboards (TensorBoard and the local
visualiser backend): the sampling points of a few fixed images
(:class:`SamplingPointsVisHook`) and the drawn predictions of a few fixed
images next to their ground truth (:class:`FixedImagesVisualizationHook`),
at every validation, so a user sees the detector learn."""
from pathlib import Path
from typing import Sequence

import mmcv
from mmdet.engine.hooks import DetVisualizationHook
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ddetr_plugin.registry import HOOKS
from .sampling_points import capture_sampling_points, sampling_point_figures


@HOOKS.register_module()
class SamplingPointsVisHook(Hook):
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
            raise ValueError('SamplingPointsVisHook needs image_indices and '
                             f'topk >= 1, got {image_indices} and {topk}')
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


@HOOKS.register_module()
class FixedImagesVisualizationHook(DetVisualizationHook):
    """mmdet's ``DetVisualizationHook`` for fixed validation images.

    mmdet's hook draws the first image of every ``interval``-th batch, so
    which images it draws changes between validations, all under one name.
    This one draws the images whose file names are ``image_names``, at every
    validation, ground truth beside predictions, each under its own name
    (``val_<file name>``, step = epoch), so TensorBoard shows each image
    improving epoch by epoch. Test-time behaviour is mmdet's.

    Args:
        image_names (Sequence[str]): file names (e.g.
            ``BloodImage_00000.jpg``) of validation images.
        **kwargs: ``DetVisualizationHook`` arguments (``draw``,
            ``score_thr``, ``show``, ``test_out_dir``, ...); ``interval``
            is unused in validation.
    """

    def __init__(self, image_names: Sequence[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.image_names = set(image_names)

    def after_val_iter(self, runner, batch_idx: int, data_batch: dict,
                       outputs) -> None:
        """Draw the outputs of the chosen images."""
        if self.draw is False:
            return
        for output in outputs:
            name = Path(output.img_path).name
            if name not in self.image_names:
                continue
            image = mmcv.imread(output.img_path, channel_order='rgb')
            # the runner's own visualizer: mmdet's hook takes the latest
            # created instance, another Runner's when one process builds two
            runner.visualizer.add_datasample(
                f'val_{name}', image, data_sample=output, show=self.show,
                wait_time=self.wait_time, pred_score_thr=self.score_thr,
                step=runner.epoch)
