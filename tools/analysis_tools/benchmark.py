"""Benchmark a config: mmdet's own ``tools/analysis_tools/benchmark.py`` with
ddetr_plugin loaded, whose inference mode also runs without CUDA.

Same arguments as mmdet's (``CONFIG [--checkpoint CKPT] [--task
{inference,dataloader,dataset}] [--max-iter N] [--num-warmup N]
[--log-interval N] [--repeat-num N] [--dataset-type {train,val,test}]
[--work-dir DIR] [--cfg-options k=v ...]``), shipped in mmdet
(``mmdet/.mim/tools/analysis_tools/benchmark.py``). mmdet's dataset and
dataloader modes run anywhere and need nothing of this script (run mmdet's
directly, see docs/packaging.md). Its inference mode moves the model to
CUDA and synchronises CUDA around every image; on a machine without CUDA
this script runs it with :class:`CPUInferenceBenchmark` instead: the same
loop (batch 1, no dataloader workers, ``--num-warmup`` images left out of
the timing, ``model.test_step`` under ``torch.no_grad``) with the model on
the CPU. The log ends with ``Overall fps: F img/s, times per image: T
ms/img`` as mmdet's does.
"""
import runpy
import time
from pathlib import Path

import mmdet
import torch
from mmcv.cnn import fuse_conv_bn
from mmengine.runner import load_checkpoint
from mmdet.registry import MODELS
from mmdet.utils import benchmark as mmdet_benchmark

import ddetr_plugin  # noqa: F401  (registry scope, safe checkpoint loading)

MMDET_BENCHMARK = str(Path(mmdet.__file__).parent / '.mim' / 'tools' /
                      'analysis_tools' / 'benchmark.py')


class CPUInferenceBenchmark(mmdet_benchmark.InferenceBenchmark):
    """mmdet's ``InferenceBenchmark`` with the model on the CPU.

    Args: as mmdet's ``InferenceBenchmark`` (``cfg``, ``checkpoint``,
    ``distributed`` (must be False), ``is_fuse_conv_bn``, ``max_iter``,
    ``log_interval``, ``num_warmup``, ``logger``).

    Raises:
        ValueError: ``max_iter <= num_warmup`` (no image would be timed).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.max_iter <= self.num_warmup:
            raise ValueError(
                f'--max-iter ({self.max_iter}) must exceed --num-warmup '
                f'({self.num_warmup}): the first {self.num_warmup} images '
                'are not timed')

    def _init_model(self, checkpoint: str, is_fuse_conv_bn: bool):
        """The detector in eval mode on the CPU, weights from
        ``checkpoint``."""
        model = MODELS.build(self.cfg.model)
        load_checkpoint(model, checkpoint, map_location='cpu')
        if is_fuse_conv_bn:
            model = fuse_conv_bn(model)
        model.eval()
        return model

    def run_once(self) -> dict:
        """Time ``test_step`` on up to ``max_iter`` images, the first
        ``num_warmup`` untimed.

        Returns:
            dict: ``{'fps': images per second}`` over the timed images.
        """
        elapsed, timed = 0.0, 0
        for i, data in enumerate(self.data_loader):
            start = time.perf_counter()
            with torch.no_grad():
                self.model.test_step(data)
            if i >= self.num_warmup:
                elapsed += time.perf_counter() - start
                timed += 1
                if (i + 1) % self.log_interval == 0:
                    mmdet_benchmark.print_log(
                        f'Done image [{i + 1:<3}/{self.max_iter}], fps: '
                        f'{timed / elapsed:.1f} img/s, times per image: '
                        f'{1000 * elapsed / timed:.1f} ms/img (cpu)',
                        self.logger)
                    mmdet_benchmark.print_process_memory(
                        self._process, self.logger)
            if i + 1 == self.max_iter:
                break
        if timed == 0:
            raise RuntimeError(
                f'the test dataloader gave {i + 1} images, all of them '
                f'warm-up (--num-warmup {self.num_warmup}): none was timed')
        return {'fps': timed / elapsed}

    def average_multiple_runs(self, results: list) -> dict:
        """mmdet's summary without its CUDA memory line.

        Returns:
            dict: ``avg_fps`` and ``fps_list`` (one per ``--repeat-num``).
        """
        mmdet_benchmark.print_log('============== Done ==================',
                                  self.logger)
        fps = [round(result['fps'], 1) for result in results]
        average = sum(fps) / len(fps)
        if len(fps) > 1:
            times = [round(1000 / result['fps'], 1) for result in results]
            summary = (f'Overall fps: {fps}[{average:.1f}] img/s, times per '
                       f'image: {times}[{sum(times) / len(times):.1f}] '
                       'ms/img (cpu)')
        else:
            summary = (f'Overall fps: {fps[0]:.1f} img/s, times per image: '
                       f"{1000 / results[0]['fps']:.1f} ms/img (cpu)")
        mmdet_benchmark.print_log(summary, self.logger)
        mmdet_benchmark.print_process_memory(self._process, self.logger)
        return {'avg_fps': average, 'fps_list': fps}


def main() -> None:
    if not torch.cuda.is_available():
        # mmdet's script imports the class from this module when it runs
        mmdet_benchmark.InferenceBenchmark = CPUInferenceBenchmark
    runpy.run_path(MMDET_BENCHMARK, run_name='__main__')


if __name__ == '__main__':
    main()
