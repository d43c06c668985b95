"""Shared helpers of the model tests: mmdet's and our Deformable DETR configs
shrunk the same way, built in their own registry scopes, and a batch of two
differently sized images."""
import copy
from pathlib import Path

import mmdet
import torch
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData
from torch import nn

from ddetr_plugin.registry import MODELS
from .paths import REPO_ROOT

OUR_CONFIG_DIR = REPO_ROOT / 'configs'
MMDET_CONFIG_DIR = Path(mmdet.__file__).parent / '.mim' / 'configs'
# the three variants, named alike in mmdet's and our config folders
VARIANTS = [
    'deformable-detr_r50_16xb2-50e_coco.py',
    'deformable-detr-refine_r50_16xb2-50e_coco.py',
    'deformable-detr-refine-twostage_r50_16xb2-50e_coco.py',
]

# the same shrinking on both sides, to keep CPU time low
SMALL = dict(depth=18, in_channels=[128, 256, 512], num_layers=2,
             num_queries=30)


def load_mmdet_config(name: str,
                      small: bool = True,
                      folder: str = 'deformable_detr') -> Config:
    """mmdet 3.3's own config ``folder/name`` (Deformable DETR's by
    default), backbone not pretrained."""
    cfg = Config.fromfile(MMDET_CONFIG_DIR / folder / name)
    model = cfg.model
    model.backbone.init_cfg = None
    if small:
        model.backbone.depth = SMALL['depth']
        model.neck.in_channels = SMALL['in_channels']
        model.encoder.num_layers = SMALL['num_layers']
        model.decoder.num_layers = SMALL['num_layers']
        model.num_queries = SMALL['num_queries']
    return cfg


def load_our_config(name: str,
                    small: bool = True,
                    folder: str = 'deformable_detr') -> Config:
    """Our config of the same name, shrunk like :func:`load_mmdet_config`."""
    cfg = Config.fromfile(OUR_CONFIG_DIR / folder / name)
    if small:
        model = cfg.model
        model.backbone.depth = SMALL['depth']
        model.neck.in_channels = SMALL['in_channels']
        model.transformer.encoder.num_layers = SMALL['num_layers']
        model.transformer.decoder.num_layers = SMALL['num_layers']
        model.transformer.num_queries = SMALL['num_queries']
    return cfg


def build_mmdet_model(cfg: Config) -> nn.Module:
    """mmdet's DeformableDETR, built in the mmdet scope.

    Instead of the slow full ``init_weights`` (seconds on CPU), only what
    construction leaves unset or unrealistic is initialised: the
    uninitialised ``level_embed`` and the head's biases."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MMDET_MODELS.build(copy.deepcopy(cfg.model))
    nn.init.normal_(model.level_embed)
    model.bbox_head.init_weights()
    return model


def build_our_model(cfg: Config) -> nn.Module:
    """Our DeformableDETR, built in the ddetr_plugin scope (not
    initialised)."""
    with DefaultScope.overwrite_default_scope('ddetr_plugin'):
        return MODELS.build(copy.deepcopy(cfg.model))


def perturb_(model: nn.Module, std: float = 0.02, seed: int = 0) -> None:
    """Add Gaussian noise to every parameter, so that zero-initialised ones
    (sampling offsets, attention weights, last box layers) matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * std)


def set_dropout_(model: nn.Module, p: float = 0.) -> None:
    """Set the probability of every dropout (modules and attention)."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = p
        elif isinstance(m, nn.MultiheadAttention):
            m.dropout = p


IMAGE_SHAPES = [(96, 128), (80, 112)]
GT_BOXES = [  # pixel xyxy in the resized image
    [[10., 12., 60., 70.], [70., 5., 120., 40.], [30., 50., 90., 94.]],
    [[5., 8., 50., 60.], [60., 30., 110., 78.]],
]
GT_LABELS = [[3, 17, 3], [0, 79]]


def make_batch(empty_gt: bool = False, seed: int = 0) -> dict:
    """Two random images of different sizes with ground truth, as
    ``DetDataPreprocessor`` expects them; the originals were twice as big
    (``scale_factor`` 0.5). ``empty_gt`` leaves the second one without
    objects."""
    gen = torch.Generator().manual_seed(seed)
    inputs, data_samples = [], []
    for i, ((h, w), boxes, labels) in enumerate(
            zip(IMAGE_SHAPES, GT_BOXES, GT_LABELS)):
        if empty_gt and i == 1:
            boxes, labels = torch.zeros((0, 4)), []
        inputs.append(
            torch.randint(0, 256, (3, h, w), generator=gen,
                          dtype=torch.uint8))
        sample = DetDataSample(
            metainfo=dict(
                img_id=i,
                img_shape=(h, w),
                ori_shape=(2 * h, 2 * w),
                scale_factor=(0.5, 0.5)))
        sample.gt_instances = InstanceData(
            bboxes=torch.as_tensor(boxes, dtype=torch.float32),
            labels=torch.as_tensor(labels, dtype=torch.long))
        data_samples.append(sample)
    return dict(inputs=inputs, data_samples=data_samples)


def assert_same_eval_outputs(plain: nn.Module, other: nn.Module,
                             data: dict) -> None:
    """``other`` in eval mode gives bitwise ``plain``'s raw outputs
    (``mode='tensor'``, only ``plain``'s queries) and detections on the
    preprocessed ``data``; both models are put in eval mode."""
    plain.eval()
    other.eval()
    with torch.no_grad():
        plain_outputs = plain(**copy.deepcopy(data), mode='tensor')
        other_outputs = other(**copy.deepcopy(data), mode='tensor')
        assert other_outputs[0].shape[2] == plain.transformer.num_queries
        for ours, theirs in zip(other_outputs, plain_outputs):
            assert torch.equal(ours, theirs)
        plain_preds = plain(**copy.deepcopy(data), mode='predict')
        other_preds = other(**copy.deepcopy(data), mode='predict')
    for ours, theirs in zip(other_preds, plain_preds):
        for key in ('scores', 'labels', 'bboxes'):
            assert torch.equal(ours.pred_instances[key],
                               theirs.pred_instances[key])


def assert_same_detections(our: InstanceData, their: InstanceData,
                           rtol: float, atol: float) -> None:
    """Same sorted scores; the same (label, box) for every detection, where
    detections with scores equal within the tolerance may swap places (and
    may be swapped across the top-k cut-off)."""
    def close(a, b):
        return torch.allclose(a, b, rtol=rtol, atol=atol)

    assert torch.allclose(our.scores, their.scores, rtol=rtol, atol=atol)
    unmatched = list(range(len(their)))
    for score, label, box in zip(our.scores, our.labels, our.bboxes):
        match = next((j for j in unmatched
                      if label == their.labels[j] and close(
                          box, their.bboxes[j]) and close(
                              score, their.scores[j])), None)
        if match is None:  # tied with the last one kept
            assert close(score, their.scores[-1])
        else:
            unmatched.remove(match)
