"""``tools/infer.py`` and ``tools/deployment/export_onnx.py`` as users run
them (real subprocesses, real BCCD images, a small random-but-fixed model
saved as a checkpoint): the onnxruntime backend writes the json files and
drawn images of the PyTorch backend; missing, corrupt and non-image inputs
are reported by name, the others still run, the exit status is 1; the
shared preprocessing is mmdet's ``inference_detector``'s."""
import json
import shutil

import mmcv
import numpy as np
import pytest
import torch
from helpers.paths import REPO_ROOT, shared_data_dir
from helpers.tiny_training import run_tool
from mmengine.config import Config
from test_onnx_export import match_detections

from ddetr_plugin.apis.inference import PyTorchDetector
from ddetr_plugin.datasets.preprocessing import read_image, rescale_boxes

CONFIG = (REPO_ROOT / 'configs' / 'deformable_detr' /
          'deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py')
IMAGES = ['BloodImage_00007.jpg', 'BloodImage_00011.jpg']


@pytest.fixture(scope='module')
def small_checkpoint(tmp_path_factory):
    """The BCCD demo config with one encoder and one decoder layer, and a
    checkpoint of its random-but-fixed weights."""
    from mmdet.apis import init_detector
    root = tmp_path_factory.mktemp('model')
    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone.init_cfg = None
    cfg.model.transformer.encoder.num_layers = 1
    cfg.model.transformer.decoder.num_layers = 1
    config = root / 'small_bccd.py'
    cfg.dump(str(config))
    model = init_detector(str(config), device='cpu')
    torch.manual_seed(0)
    with torch.no_grad():  # make every branch matter
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    checkpoint = root / 'small_bccd.pth'
    torch.save(
        dict(state_dict=model.state_dict(),
             meta=dict(dataset_meta=dict(classes=cfg.metainfo.classes))),
        checkpoint)
    return config, checkpoint


def _run(*args, ok=True):
    return run_tool(*args, timeout=600, check=ok)


def test_preprocessing_is_mmdets(small_checkpoint):
    """The PyTorch backend (our Preprocessor + rescale) gives mmdet's
    inference_detector's detections."""
    from mmdet.apis import inference_detector
    detector = PyTorchDetector(*map(str, small_checkpoint))
    path = shared_data_dir('bccd', 'BCCD', 'JPEGImages', IMAGES[0])
    inputs, sample = detector.preprocessor(read_image(path))
    scores, labels, boxes = detector(inputs, sample)
    expected = inference_detector(detector.model, str(path)).pred_instances
    torch.testing.assert_close(scores, expected.scores)
    assert labels.tolist() == expected.labels.tolist()
    torch.testing.assert_close(rescale_boxes(boxes, sample), expected.bboxes)


@pytest.mark.slow  # exports a model to ONNX
def test_onnxruntime_backend_writes_what_pytorch_writes(small_checkpoint,
                                                        tmp_path):
    config, checkpoint = small_checkpoint
    images = [shared_data_dir('bccd', 'BCCD', 'JPEGImages', name)
              for name in IMAGES]
    model_file = tmp_path / 'model.onnx'
    out = _run('tools/deployment/export_onnx.py', config, checkpoint,
               '--out', model_file).stdout
    assert 'onnx.checker passed' in out
    _run('tools/infer.py', config, checkpoint, *images, '--out-dir',
         tmp_path / 'pytorch', '--score-thr', '0.05')
    _run('tools/infer.py', '--backend', 'onnxruntime', model_file, *images,
         '--out-dir', tmp_path / 'onnx', '--score-thr', '0.05')
    for image in images:
        torch_pred, onnx_pred = (json.loads(
            (tmp_path / backend / 'preds' /
             f'{image.stem}.json').read_text())
            for backend in ('pytorch', 'onnx'))
        assert torch_pred['scores']  # something above the threshold
        assert onnx_pred['classes'] == ['RBC', 'WBC', 'Platelets']
        # 4 decimals of scores and 2 of boxes are written
        match_detections(onnx_pred['scores'], onnx_pred['labels'],
                         onnx_pred['bboxes_xyxy'], torch_pred['scores'],
                         torch_pred['labels'], torch_pred['bboxes_xyxy'],
                         score_tol=2e-4, box_tol=0.02)
        drawn = [mmcv.imread(str(tmp_path / backend / 'vis' / image.name))
                 for backend in ('pytorch', 'onnx')]
        assert drawn[0].shape == (480, 640, 3)
        # the same boxes drawn (jpeg noise aside)
        assert np.abs(drawn[0].astype(int) - drawn[1]).mean() < 1.0


def test_bad_inputs_are_reported_and_skipped(small_checkpoint, tmp_path):
    config, checkpoint = small_checkpoint
    good = tmp_path / 'good.jpg'
    shutil.copy(shared_data_dir('bccd', 'BCCD', 'JPEGImages', IMAGES[0]),
                good)
    corrupt = tmp_path / 'corrupt.jpg'
    corrupt.write_bytes(good.read_bytes()[:200])  # truncated jpeg
    not_image = tmp_path / 'notes.txt'
    not_image.write_text('not an image\n')
    missing = tmp_path / 'missing.png'
    proc = _run('tools/infer.py', config, checkpoint, corrupt, missing,
                not_image, good, '--out-dir', tmp_path / 'out', ok=False)
    assert proc.returncode == 1
    for bad in (corrupt, missing, not_image):
        assert f'error: {bad}' in proc.stderr
    assert 'good.jpg' not in proc.stderr
    assert (tmp_path / 'out' / 'preds' / 'good.json').is_file()
    assert (tmp_path / 'out' / 'vis' / 'good.jpg').is_file()
    assert sorted(p.name for p in (tmp_path / 'out' / 'preds').iterdir()) \
        == ['good.json']
    assert '3 input(s) failed' in proc.stdout
