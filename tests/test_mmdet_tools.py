"""mmdet 3.3's own tools (``mmdet/.mim/tools``) on our configs and a tiny
trained checkpoint, each run as a subprocess the way a user runs it (the
repository on ``PYTHONPATH``; our configs' ``default_scope`` imports
ddetr_plugin), each checked by the files it writes: ``test.py --out``,
``analysis_tools/``'s ``eval_metric.py``, ``analyze_results.py``,
``confusion_matrix.py``, ``coco_error_analysis.py``, ``browse_dataset.py``,
``analyze_logs.py plot_curve``, ``benchmark.py`` (dataset and dataloader
modes; the inference mode through our ``tools/analysis_tools/benchmark.py``,
mmdet's being CUDA-only) and ``get_flops.py`` (our op counted, see
``ddetr_plugin/ops/flops.py``).

One module fixture trains the checkpoint (4 BCCD images, 2 iterations) and
predicts the 4 images with mmdet's ``test.py``; the tests share it on one
pytest-xdist worker."""
import json
import pickle
import re
from pathlib import Path

import mmdet
import pytest
from helpers.paths import BCCD_CONFIG, missing_in_ci_fails
from mmengine.config import Config
from helpers.tiny_training import (TOOLS, bccd_annotations, run_tool,
                                   write_tiny_config)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('mmdet_tools')]

MMDET_TOOLS = Path(mmdet.__file__).parent / '.mim' / 'tools'
ANALYSIS = MMDET_TOOLS / 'analysis_tools'
IMAGES = 4


def _require(module: str) -> None:
    """A pinned optional dependency of mmdet's tools must be installed."""
    try:
        __import__(module)
    except ImportError:
        missing_in_ci_fails(f'{module} (requirements.txt) is not installed')


def _files(folder: Path, pattern: str = '*') -> list:
    return sorted(p for p in folder.rglob(pattern) if p.is_file()
                  and p.stat().st_size > 0)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """The tiny config, its annotation file, its checkpoint, its training
    work dir, and mmdet's ``test.py --out`` predictions (pickle)."""
    root = tmp_path_factory.mktemp('mmdet_tools')
    ann_file = bccd_annotations(root, IMAGES)
    # the tiny config's train pipeline starts with the BCCD config's own
    # loading step (mmdet's analyze_results.py reads it)
    loader = Config.fromfile(BCCD_CONFIG).train_pipeline[0].to_dict()
    config = write_tiny_config(
        root / 'tiny.py', ann_file, max_epochs=1, val_begin=2,
        extra=f"train_dataloader['dataset']['pipeline'][0] = {loader!r}\n")
    work_dir = root / 'train'
    train = run_tool(TOOLS / 'train.py', config, '--work-dir', work_dir)
    checkpoint = work_dir / 'epoch_1.pth'
    results = root / 'results.pkl'
    test = run_tool(MMDET_TOOLS / 'test.py', config, checkpoint,
                    '--work-dir', root / 'test', '--out', results)
    assert 'coco/bbox_mAP' in test.stdout + test.stderr
    # the backbone's batch norms folded (configs/_base_/default_runtime.py)
    # in training (mmengine) and in mmdet's test.py (DeformableDETRRunner)
    for proc in train, test:
        assert 'Enabling the "efficient_conv_bn_eval" feature for ' \
            "sub-modules: ['backbone']" in proc.stdout + proc.stderr
    return dict(root=root, config=config, ann_file=ann_file,
                checkpoint=checkpoint, work_dir=work_dir, results=results)


def test_test_out_writes_every_prediction(trained):
    with open(trained['results'], 'rb') as f:
        results = pickle.load(f)
    assert len(results) == IMAGES
    for result in results:
        predictions = result['pred_instances']
        assert len(predictions['scores']) == 20  # max_per_img
        assert predictions['bboxes'].shape == (20, 4)
        assert result['img_path'].endswith('.jpg')


def test_eval_metric(trained):
    proc = run_tool(ANALYSIS / 'eval_metric.py', trained['config'],
                    trained['results'])
    assert re.search(r"'coco/bbox_mAP': -?\d", proc.stdout), proc.stdout


def test_analyze_results(trained, tmp_path):
    """mmdet reads the loading steps of our train pipeline
    (``get_loading_pipeline``) and draws the best and worst images."""
    proc = run_tool(ANALYSIS / 'analyze_results.py', trained['config'],
                    trained['results'], tmp_path, '--topk', '2')
    for kind in ('good', 'bad'):
        drawn = _files(tmp_path / kind, '*.jpg')
        assert len(drawn) == 2, (kind, drawn, proc.stdout[-2000:])


def test_confusion_matrix(trained, tmp_path):
    _require('matplotlib')
    run_tool(ANALYSIS / 'confusion_matrix.py', trained['config'],
             trained['results'], tmp_path)
    assert _files(tmp_path, 'confusion_matrix.png')


def test_coco_error_analysis(trained, tmp_path):
    """On the COCO json that ``test.py`` writes with ``format_only``."""
    prefix = tmp_path / 'predictions'
    run_tool(MMDET_TOOLS / 'test.py', trained['config'],
             trained['checkpoint'], '--work-dir', tmp_path / 'test',
             '--cfg-options', 'test_evaluator.format_only=True',
             f'test_evaluator.outfile_prefix={prefix}')
    boxes = json.loads(Path(f'{prefix}.bbox.json').read_text())
    assert len(boxes) == IMAGES * 20
    out = tmp_path / 'analysis'
    run_tool(ANALYSIS / 'coco_error_analysis.py', f'{prefix}.bbox.json',
             out, '--ann', trained['ann_file'])
    plots = [p.name for p in _files(out / 'bbox', '*.png')]
    # precision-recall plots per class and over all classes, each for all
    # box sizes and for small, medium, large ones
    for name in ('RBC', 'WBC', 'Platelets', 'allclass'):
        for area in ('allarea', 'small', 'medium', 'large'):
            assert f'bbox-{name}-{area}.png' in plots, plots


def test_browse_dataset(trained, tmp_path):
    """The training samples after our train pipeline (its loading step
    included), drawn."""
    run_tool(ANALYSIS / 'browse_dataset.py', trained['config'],
             '--output-dir', tmp_path, '--not-show')
    assert len(_files(tmp_path, '*.jpg')) == IMAGES


def test_analyze_logs_plot_curve(trained, tmp_path):
    _require('seaborn')
    (scalars, ) = trained['work_dir'].glob('*/vis_data/scalars.json')
    out = tmp_path / 'loss.png'
    run_tool(ANALYSIS / 'analyze_logs.py', 'plot_curve', scalars, '--keys',
             'loss', 'loss_cls', '--out', out)
    assert out.stat().st_size > 0


@pytest.mark.parametrize('task,unit', [('dataset', 'img'),
                                       ('dataloader', 'batch')])
def test_benchmark_data(trained, tmp_path, task, unit):
    _require('psutil')
    run_tool(ANALYSIS / 'benchmark.py', trained['config'], '--task', task,
             '--max-iter', IMAGES, '--num-warmup', 1, '--log-interval', 2,
             '--work-dir', tmp_path)
    log = (tmp_path / 'benchmark.log').read_text()
    assert re.search(rf'Overall fps: \d+\.\d {unit}/s', log), log[-2000:]


def test_benchmark_inference_on_cpu(trained, tmp_path):
    """mmdet's inference benchmark moves the model to CUDA; our
    tools/analysis_tools/benchmark.py runs the same loop on the CPU."""
    _require('psutil')
    run_tool(TOOLS / 'analysis_tools' / 'benchmark.py', trained['config'],
             '--checkpoint', trained['checkpoint'], '--task', 'inference',
             '--max-iter', IMAGES, '--num-warmup', 1, '--log-interval', 2,
             '--work-dir', tmp_path)
    log = (tmp_path / 'benchmark.log').read_text()
    assert re.search(r'Overall fps: \d+\.\d img/s, times per image: '
                     r'\d+\.\d ms/img \(cpu\)', log), log[-2000:]
    assert re.search(r'Done image \[2 +/4\], fps: ', log), log[-2000:]


def test_get_flops_counts_our_op(trained):
    proc = run_tool(ANALYSIS / 'get_flops.py', trained['config'],
                    '--num-images', 1)
    output = proc.stdout + proc.stderr
    assert re.search(r'Flops: \d+(\.\d+)?[MG]', output), output[-2000:]
    assert 'Input shape: (96, 128)' in output, output[-2000:]
    # mmengine warns about every operator without a flop or activation
    # handle (elementwise ones, norms for activations): ours is not one
    unsupported = re.findall(r'Unsupported operator (\S+) encountered',
                             output)
    assert 'aten::sigmoid' in unsupported, output[-3000:]
    assert not [op for op in unsupported if op.startswith('ddetr_plugin')]
