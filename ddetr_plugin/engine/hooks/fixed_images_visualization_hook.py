"""``FixedImagesVisualizationHook``: the drawn predictions of a few fixed
validation images next to their ground truth in the dashboards (TensorBoard
and the local visualiser backend) at every validation, so a user sees the
detector learn."""
from pathlib import Path
from typing import Sequence

import mmcv
from mmdet.engine.hooks import DetVisualizationHook

from ddetr_plugin.registry import HOOKS


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
