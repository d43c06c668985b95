"""The BCCD demo's chain (``make demo``) on real BCCD data, shortened:
mmdet's own tools/train.py (through ours) trains the BCCD config on a slice,
the Runner checkpoint loads in tools/test.py under torch's safe loading, and
tools/infer.py draws one real image.

Every test here needs the trained model (the module fixture trains for a few
minutes), so all are marked ``slow``."""
import json
import warnings

import pytest
from mmengine.config import Config
from helpers.paths import (BCCD_CLASSES, REPO_ROOT, missing_in_ci_fails,
                          shared_data_dir)
from helpers.tiny_training import run_tool

# every test uses the `trained` fixture: slow, and on one pytest-xdist
# worker, which trains once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('bccd_demo')]

CONFIG = (REPO_ROOT / 'configs' / 'deformable_detr' /
          'deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py')
WEIGHTS = REPO_ROOT / 'checkpoints' / 'mobilenetv2_imagenet_mmdet.pth'


def _run(*args):
    proc = run_tool(*args, timeout=600)
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Train 4 epochs on 4 BCCD images (the config's batches) at
    256x192."""
    bccd = shared_data_dir('bccd', 'BCCD')
    if not WEIGHTS.exists():
        missing_in_ci_fails(f'{WEIGHTS} missing: run `make weights`')
    from ddetr_plugin.datasets.voc_to_coco import convert_voc_to_coco
    root = tmp_path_factory.mktemp('bccd')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the two degenerate boxes
        convert_voc_to_coco(str(bccd), str(root), splits=('train', ),
                            classes=BCCD_CLASSES)
    ann_file = root / 'annotations' / 'train.json'
    work_dir = root / 'work_dir'
    scale = '(256,192)'
    options = [
        f'train_dataloader.dataset.ann_file={ann_file}',
        'train_dataloader.dataset.indices=4',
        'train_dataloader.dataset.pipeline.2.prob=0.0',  # no flips
        f'train_dataloader.dataset.pipeline.3.scale={scale}',
        # validate on the same images
        f'val_dataloader.dataset.ann_file={ann_file}',
        'val_dataloader.dataset.indices=4',
        f'val_dataloader.dataset.pipeline.1.scale={scale}',
        f'val_evaluator.ann_file={ann_file}',
        f'test_dataloader.dataset.ann_file={ann_file}',
        'test_dataloader.dataset.indices=4',
        f'test_dataloader.dataset.pipeline.1.scale={scale}',
        f'test_evaluator.ann_file={ann_file}',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False',
        'train_cfg.max_epochs=4',
        'default_hooks.logger.interval=1',
    ]
    _run(REPO_ROOT / 'tools' / 'train.py', CONFIG, '--work-dir', work_dir,
         '--cfg-options', *options)
    return work_dir, options


def test_training_lowers_the_loss_and_logs_coco_metrics(trained):
    work_dir, _ = trained
    (scalars, ) = work_dir.glob('*/vis_data/scalars.json')
    records = [json.loads(line) for line in scalars.read_text().splitlines()]
    losses = [r['loss'] for r in records if 'loss' in r]
    batch_size = Config.fromfile(CONFIG).train_dataloader.batch_size
    # 4 epochs of 4 images, every iteration logged
    assert len(losses) == 4 * 4 // batch_size
    assert losses[-1] < losses[0]
    maps = [r['coco/bbox_mAP'] for r in records if 'coco/bbox_mAP' in r]
    assert len(maps) == 4  # validated after every epoch
    assert all(0.0 <= m <= 1.0 for m in maps)
    assert any('lr' in r for r in records)
    assert list(work_dir.glob('*/vis_data/events.out.tfevents.*'))
    assert (work_dir / 'epoch_4.pth').exists()


def test_checkpoint_loads_in_test_tool(trained):
    """mmdet's tools/test.py loads the Runner checkpoint (safe loading)."""
    work_dir, options = trained
    out = _run(REPO_ROOT / 'tools' / 'test.py', CONFIG,
               work_dir / 'epoch_4.pth', '--work-dir', work_dir / 'test',
               '--cfg-options', *options)
    assert 'coco/bbox_mAP' in out


def test_infer_tool_on_a_real_image(trained, tmp_path):
    work_dir, _ = trained
    image = shared_data_dir('bccd', 'BCCD', 'JPEGImages',
                            'BloodImage_00007.jpg')
    _run(REPO_ROOT / 'tools' / 'infer.py', CONFIG, work_dir / 'epoch_4.pth',
         image, '--out-dir', tmp_path, '--score-thr', '0.0')
    pred = json.loads((tmp_path / 'preds' / 'BloodImage_00007.json')
                      .read_text())
    assert (pred['width'], pred['height']) == (640, 480)
    assert pred['classes'] == ['RBC', 'WBC', 'Platelets']
    assert len(pred['bboxes_xyxy']) == len(pred['scores']) == 100
    assert all(0 <= x1 <= x2 <= 640 and 0 <= y1 <= y2 <= 480
               for x1, y1, x2, y2 in pred['bboxes_xyxy'])
    assert (tmp_path / 'vis' / 'BloodImage_00007.jpg').stat().st_size > 0
