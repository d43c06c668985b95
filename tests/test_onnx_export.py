"""ONNX export of the whole detector (``ddetr_plugin.deployment``): the
graph passes ``onnx.checker`` and onnxruntime's CPU provider gives the
scores, labels and boxes of PyTorch (our compiled MSDA op) within 1e-4 on
real BCCD images, for the three variants at the export size and, exported
with ``dynamic=True``, at two other sizes. Small random-but-fixed models
(ResNet-18, one encoder and one decoder layer) keep each export under a
minute."""
import os
import subprocess
import sys

import onnx
import onnxruntime
import pytest
import torch
from helpers.ddetr_model_utils import (VARIANTS, build_our_model,
                                       load_our_config, perturb_)
from helpers.paths import REPO_ROOT, shared_data_dir

from ddetr_plugin.datasets.preprocessing import Preprocessor, read_image
from ddetr_plugin.deployment import (MIN_OPSET, METADATA_KEY, export_onnx,
                                     require_onnx_packages)

EXPORT_SCALE = (512, 384)  # (w, h): BCCD's 640x480 at 0.8, no padding
OTHER_SCALES = [(448, 336), (576, 432)]
IMAGES = ['BloodImage_00000.jpg', 'BloodImage_00007.jpg']
DYNAMIC_VARIANT = VARIANTS[2]  # two-stage + refine
# the exports are cached per module (``exported``): one pytest-xdist worker
# runs the file
pytestmark = pytest.mark.xdist_group('onnx_export')


def _small_model(variant):
    cfg = load_our_config(variant)
    cfg.model.transformer.encoder.num_layers = 1
    cfg.model.transformer.decoder.num_layers = 1
    model = build_our_model(cfg)
    perturb_(model, seed=1)
    return cfg, model.eval()


def _inputs(cfg, scale, name):
    """A real BCCD image resized to fit ``scale`` and normalised (mmdet's
    Resize and DetDataPreprocessor)."""
    preprocessor = Preprocessor(
        dict(resize=dict(type='mmdet.Resize', scale=scale, keep_ratio=True),
             data_preprocessor=dict(cfg.model.data_preprocessor,
                                    type='mmdet.DetDataPreprocessor')))
    return preprocessor(
        read_image(shared_data_dir('bccd', 'BCCD', 'JPEGImages', name)))


def _pytorch(model, inputs, sample):
    with torch.no_grad():
        pred = model.predict(inputs, [sample.clone()],
                             rescale=False)[0].pred_instances
    return pred.scores, pred.labels, pred.bboxes


def match_detections(scores, labels, boxes, ref_scores, ref_labels,
                     ref_boxes, score_tol, box_tol):
    """Assert that two top-k lists hold the same detections: each of
    ``scores``/``labels``/``boxes`` (K,), (K,), (K, 4) has an unused
    partner in the reference with the same label, a score within
    ``score_tol`` and a box within ``box_tol``. Equal up to the order of
    detections whose scores tie within ``score_tol`` (top-k may swap
    them); the sorted scores must agree element-wise."""
    scores, ref_scores = torch.as_tensor(scores), torch.as_tensor(ref_scores)
    boxes, ref_boxes = torch.as_tensor(boxes), torch.as_tensor(ref_boxes)
    labels, ref_labels = list(labels), list(ref_labels)
    assert len(scores) == len(ref_scores)
    torch.testing.assert_close(scores, ref_scores, rtol=0, atol=score_tol)
    unused = set(range(len(ref_scores)))
    for i in range(len(scores)):
        partners = [
            j for j in sorted(unused, key=lambda j: abs(j - i))
            if ref_labels[j] == labels[i]
            and abs(ref_scores[j] - scores[i]) <= score_tol
            and (ref_boxes[j] - boxes[i]).abs().max() <= box_tol
        ]
        assert partners, (f'detection {i} (label {labels[i]}, score '
                          f'{scores[i]:.5f}, box {boxes[i].tolist()}) has '
                          'no partner in the reference')
        unused.remove(partners[0])
    # most detections are at the same rank
    same = sum(a == b for a, b in zip(labels, ref_labels))
    assert same >= 0.9 * len(labels)


def _check_parity(session, model, inputs, sample):
    """onnxruntime vs PyTorch: scores within 1e-4, boxes within 1e-4 of the
    input size (pixels / (W, H))."""
    scores, labels, boxes = session.run(None, {'image': inputs.numpy()})
    ref_scores, ref_labels, ref_boxes = _pytorch(model, inputs, sample)
    height, width = inputs.shape[2:]
    assert scores.shape == (1, *ref_scores.shape)
    size = torch.tensor([width, height, width, height])
    match_detections(scores[0], labels[0].tolist(),
                     torch.from_numpy(boxes[0]) / size, ref_scores,
                     ref_labels.tolist(), ref_boxes / size, 1e-4, 1e-4)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """Each variant's small model and its export at 384x512, static for
    the single-stage variants, dynamic for the two-stage one (the
    proposals also read the level sizes); exported once per module."""
    cache = {}

    def get(variant):
        if variant not in cache:
            cfg, model = _small_model(variant)
            path = export_onnx(
                model,
                tmp_path_factory.mktemp('onnx') / 'model.onnx', (384, 512),
                metadata=dict(classes=['a']),
                dynamic=variant == DYNAMIC_VARIANT)
            cache[variant] = cfg, model, path
        return cache[variant]

    return get


def _session(path):
    return onnxruntime.InferenceSession(
        str(path), providers=['CPUExecutionProvider'])


@pytest.mark.slow  # exports a full R50 model
@pytest.mark.parametrize('variant', VARIANTS)
def test_onnxruntime_matches_pytorch(variant, exported):
    """The graph passes onnx.checker, holds the MSDA decomposition
    (GridSample) and no custom op, and matches PyTorch (compiled op) on two
    real images at the export size."""
    cfg, model, path = exported(variant)
    model_proto = onnx.load(str(path))
    onnx.checker.check_model(model_proto, full_check=True)
    assert model_proto.opset_import[0].version == MIN_OPSET
    op_types = {node.op_type for node in model_proto.graph.node}
    assert 'GridSample' in op_types
    assert all(node.domain in ('', 'ai.onnx')
               for node in model_proto.graph.node)
    assert METADATA_KEY in {p.key for p in model_proto.metadata_props}
    session = _session(path)
    for name in IMAGES:
        inputs, sample = _inputs(cfg, EXPORT_SCALE, name)
        assert tuple(inputs.shape[2:]) == (384, 512)
        _check_parity(session, model, inputs, sample)


@pytest.mark.slow
def test_dynamic_export_at_other_sizes(exported):
    """With ``dynamic=True`` height and width are free: two other input
    sizes match PyTorch too."""
    cfg, model, path = exported(DYNAMIC_VARIANT)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param != '' for d in dims] == [False, False, True, True]
    session = _session(path)
    sizes = set()
    for name, scale in zip(IMAGES, OTHER_SCALES):
        inputs, sample = _inputs(cfg, scale, name)
        sizes.add(tuple(inputs.shape[2:]))
        _check_parity(session, model, inputs, sample)
    assert len(sizes) == 2 and (384, 512) not in sizes


@pytest.mark.slow
def test_static_export_takes_its_size_only(exported, tmp_path):
    """A static graph refuses other sizes; opsets below the exporter's
    floor are refused with the reason."""
    cfg, model, path = exported(VARIANTS[0])
    session = _session(path)
    assert session.get_inputs()[0].shape == [1, 3, 384, 512]
    other, _ = _inputs(cfg, OTHER_SCALES[0], IMAGES[1])
    with pytest.raises(Exception, match='dimensions'):
        session.run(None, {'image': other.numpy()})
    with pytest.raises(ValueError, match='opset 17 is not supported'):
        export_onnx(model, tmp_path / 'x.onnx', (384, 512), {}, opset=17)


def test_missing_packages_are_named(tmp_path):
    """The exporter CLI, run where onnxscript cannot be imported (a broken
    package first on PYTHONPATH), names it and the install command before
    building anything."""
    require_onnx_packages()  # all installed here
    broken = tmp_path / 'site' / 'onnxscript'
    broken.mkdir(parents=True)
    (broken / '__init__.py').write_text(
        "raise ImportError('onnxscript is not installed')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / 'site'))
    proc = subprocess.run(
        [sys.executable, 'tools/deployment/export_onnx.py', 'CONFIG.py',
         'CHECKPOINT.pth', '--out', str(tmp_path / 'x.onnx')],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "need ['onnxscript']" in proc.stderr
    assert 'make install' in proc.stderr
    assert not (tmp_path / 'x.onnx').exists()
