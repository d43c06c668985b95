"""No mistake waits until after training: ``DryRunTestHook`` (the test
steps before the first iteration), generated colours for a user's classes,
and two-stage on images too small for ``num_queries`` encoder tokens.

Real tools in subprocesses (``tools/train.py``, ``tools/test.py``) on the
tiny BCCD config, which inherits the BCCD demo config."""
import json

import pytest
from helpers.tiny_training import (TOOLS, bccd_annotations, run_tool,
                                   write_tiny_config)

pytestmark = pytest.mark.slow  # every test trains

CLASSES = tuple(f'class_{k}' for k in range(12))


@pytest.fixture(scope='module')
def bccd(tmp_path_factory):
    root = tmp_path_factory.mktemp('dry_run')
    return root, bccd_annotations(root, 4)


def _twelve_class_annotations(ann_file, path):
    """The same images, their boxes spread over 12 classes (labels 0-11)."""
    coco = json.loads(ann_file.read_text())
    coco['categories'] = [dict(id=k + 1, name=name)
                          for k, name in enumerate(CLASSES)]
    for k, annotation in enumerate(coco['annotations']):
        annotation['category_id'] = k % len(CLASSES) + 1
    path.write_text(json.dumps(coco))
    return path


def test_new_classes_with_the_base_palette_train_and_test_drawing(bccd):
    """The user's case: inherit the BCCD demo config, change only the
    classes (12): the base's 3-colour palette is completed, so drawing
    ground truth of label >= 3 neither fails the dry run nor tools/test.py
    after training."""
    root, ann_file = bccd
    twelve = _twelve_class_annotations(ann_file, root / 'twelve.json')
    config = write_tiny_config(
        root / 'twelve.py', twelve, max_epochs=1, extra=f'''
metainfo = dict(classes={CLASSES!r})
train_dataloader['dataset']['metainfo'] = metainfo
val_dataloader['dataset']['metainfo'] = metainfo  # also test_dataloader
model['bbox_head']['num_classes'] = 12
default_hooks['visualization'].update(draw=True, interval=1)
''')
    work_dir = root / 'twelve'
    log = run_tool(TOOLS / 'train.py', config, '--work-dir', work_dir)
    output = log.stdout + log.stderr
    assert 'generated colours for the last 9' in output
    assert 'DryRunTestHook: the test steps ran on 2 test image(s)' in output
    test = run_tool(TOOLS / 'test.py', config, work_dir / 'epoch_1.pth',
                    '--work-dir', root / 'twelve_test', '--show-dir',
                    root / 'twelve_drawn')
    assert 'coco/bbox_mAP' in test.stdout + test.stderr
    # every test image drawn, ground truth of labels 0-11 included
    assert len(list((root / 'twelve_drawn').glob('*.jpg'))) == 4


def test_a_test_split_mistake_stops_training_before_the_first_iteration(
        bccd):
    root, ann_file = bccd
    missing = root / 'no_such_test.json'
    config = write_tiny_config(
        root / 'bad_test.py', ann_file, max_epochs=1, extra=f'''
test_evaluator = dict(ann_file={str(missing)!r})
''')
    proc = run_tool(TOOLS / 'train.py', config, '--work-dir',
                    root / 'bad_test', check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert 'DryRunError' in output
    assert 'the test run after training would fail: building ' \
        'test_evaluator' in output
    assert str(missing) in output
    assert 'Epoch(train)' not in output  # not one iteration ran


def test_two_stage_on_images_too_small_for_num_queries(bccd):
    """32x24 images give 2x2 + 1x1 = 5 tokens for 20 queries: training,
    validation and the dry run use 5 proposals with a warning, never a
    crash (topk of 20 out of 5)."""
    root, ann_file = bccd
    config = write_tiny_config(
        root / 'small.py', ann_file, max_epochs=1, as_two_stage=True,
        extra='''
scale = (32, 24)
train_dataloader['dataset']['pipeline'][3]['scale'] = scale  # Resize
test_pipeline[1]['scale'] = scale  # Resize of val and test
''')
    log = run_tool(TOOLS / 'train.py', config, '--work-dir', root / 'small')
    output = log.stdout + log.stderr
    assert '5 tokens, fewer than num_queries=20' in output
    assert 'Epoch(val) [1][4/4]' in output
    assert (root / 'small' / 'epoch_1.pth').exists()
