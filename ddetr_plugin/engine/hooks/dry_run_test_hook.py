"""``DryRunTestHook``: before the first training iteration, run once what
``tools/test.py`` runs after training, so that no mistake waits until the
schedule is over."""
import tempfile
from functools import partial
from pathlib import Path
from typing import List, Optional

import mmcv
import torch
from mmengine.evaluator import Evaluator
from mmengine.hooks import Hook
from mmengine.registry import DATASETS, FUNCTIONS

from ddetr_plugin.registry import HOOKS
from ..random_state import capture_random_state, restore_random_state


class DryRunError(RuntimeError):
    """A step of the test run failed in the dry run before training."""


@HOOKS.register_module()
class DryRunTestHook(Hook):
    """Run the test steps on a few images before training starts.

    At ``before_train`` (also after a resume) this builds the
    ``test_dataloader``'s dataset (``val_dataloader``'s where the config has
    no test split) with its pipeline, and on its ``num_images`` smallest
    images (by annotated ``width * height``: the first to run out of
    encoder tokens for two-stage queries) runs the steps ``tools/test.py``
    runs: the model's ``test_step`` (eval mode, no gradients), the
    ``test_evaluator`` (``process`` and ``evaluate``: a COCO evaluation over
    the split with these predictions), and the drawing of mmdet's
    ``DetVisualizationHook`` (``visualizer.add_datasample`` with ground
    truth and predictions, written to a temporary folder and deleted).
    A test annotation file that cannot be read, a pipeline or metric that
    does not fit the model, a class without a drawing colour or a test
    image the model cannot run on then fail here, before the first
    iteration, as :class:`DryRunError` naming the step.

    Training is unchanged by it: the model's mode, every random generator
    (captured and restored) and the visualizer's ``dataset_meta`` are put
    back, and nothing is logged to the dashboards. Disable it with
    ``default_hooks = dict(dry_run_test=None)``.

    Args:
        num_images (int): images in the dry-run batch. Default 2.
    """

    priority = 'VERY_LOW'  # after the checkpoint is loaded or resumed

    def __init__(self, num_images: int = 2) -> None:
        if num_images < 1:
            raise ValueError(f'num_images must be >= 1, got {num_images}')
        self.num_images = num_images

    def before_train(self, runner) -> None:
        """Run the dry run (see the class); raise on the first failure.

        Raises:
            DryRunError: a step failed; the message names it and the
                original error is chained.
        """
        split = 'test' if runner.cfg.get('test_dataloader') else 'val'
        dataloader_cfg = runner.cfg.get(f'{split}_dataloader')
        evaluator_cfg = runner.cfg.get(f'{split}_evaluator')
        if not dataloader_cfg:
            return
        states = capture_random_state()
        visualizer = runner.visualizer
        dataset_meta = visualizer.dataset_meta
        try:
            self._dry_run(runner, split, dataloader_cfg, evaluator_cfg)
        finally:
            visualizer.dataset_meta = dataset_meta
            restore_random_state(states)

    def _step(self, what: str, function, *args):
        try:
            return function(*args)
        except Exception as error:
            raise DryRunError(
                f'the test run after training would fail: {what}: '
                f'{type(error).__name__}: {error} (DryRunTestHook ran the '
                'test steps before training; disable it with '
                'default_hooks.dry_run_test=None)') from error

    def _dry_run(self, runner, split: str, dataloader_cfg: dict,
                 evaluator_cfg: Optional[dict]) -> None:
        dataset = self._step(f'building {split}_dataloader.dataset',
                             DATASETS.build, dataloader_cfg['dataset'])
        if hasattr(dataset, 'full_init'):
            self._step(f'loading {split}_dataloader.dataset', dataset.full_init)
        indices = self._smallest_images(dataset)
        collate = self._collate_fn(dataloader_cfg)
        batch = self._step(
            f'the {split} pipeline on images {indices}',
            lambda: collate([dataset[i] for i in indices]))
        outputs = self._step(f'the model\'s test_step on {split} images',
                             self._test_step, runner.model, batch)
        metainfo = getattr(dataset, 'metainfo', None)
        if evaluator_cfg:
            evaluator = self._step(f'building {split}_evaluator', Evaluator,
                                   evaluator_cfg)
            evaluator.dataset_meta = metainfo
            self._step(f'{split}_evaluator.process', evaluator.process,
                       outputs, batch)
            self._step(f'{split}_evaluator.evaluate', evaluator.evaluate,
                       len(outputs))
        runner.visualizer.dataset_meta = metainfo
        self._step('drawing ground truth and predictions (as '
                   'DetVisualizationHook in tools/test.py)', self._draw,
                   runner.visualizer, outputs)
        runner.logger.info(
            f'DryRunTestHook: the test steps ran on {len(indices)} '
            f'{split} image(s): {split} pipeline, test_step, evaluator, '
            'drawing')

    def _smallest_images(self, dataset) -> List[int]:
        sizes = []
        for index in range(len(dataset)):
            info = dataset.get_data_info(index) if hasattr(
                dataset, 'get_data_info') else {}
            sizes.append((info.get('width', 0) * info.get('height', 0),
                          index))
        return [index for _, index in sorted(sizes)[:self.num_images]]

    @staticmethod
    def _collate_fn(dataloader_cfg: dict):
        """The dataloader's ``collate_fn``, as ``Runner.build_dataloader``
        makes it (default mmengine's ``pseudo_collate``)."""
        cfg = dict(dataloader_cfg.get('collate_fn',
                                      dict(type='pseudo_collate')))
        function = cfg.pop('type')
        if isinstance(function, str):
            function = FUNCTIONS.get(function)
        return partial(function, **cfg)

    @staticmethod
    def _test_step(model, batch) -> list:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return model.test_step(batch)
        finally:
            model.train(was_training)

    @staticmethod
    def _draw(visualizer, outputs) -> None:
        with tempfile.TemporaryDirectory() as folder:
            for k, output in enumerate(outputs):
                image = mmcv.imread(output.img_path, channel_order='rgb')
                visualizer.add_datasample(
                    'test_dry_run', image, data_sample=output, draw_gt=True,
                    draw_pred=True, show=False,
                    out_file=str(Path(folder) / f'{k}.jpg'))
