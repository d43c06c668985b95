"""Config mistakes fail when the detector is built, with a message naming
the config keys (ddetr_plugin/models/detectors/config_checks.py), on the
BCCD demo config (MobileNetV2, 3 levels) with one encoder and one decoder
layer."""
import copy
import warnings

import pytest
from helpers.paths import REPO_ROOT
from mmengine.config import Config
from mmengine.registry import DefaultScope

from ddetr_plugin.registry import MODELS

CONFIG = (REPO_ROOT / 'configs' / 'deformable_detr' /
          'deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py')


@pytest.fixture(scope='module')
def model_cfg():
    model = Config.fromfile(CONFIG).model
    model.backbone.init_cfg = None
    model.transformer.encoder.num_layers = 1
    model.transformer.decoder.num_layers = 1
    return model


def _build(model_cfg, **changes):
    cfg = copy.deepcopy(model_cfg)
    for key, value in changes.items():
        node = cfg
        *path, last = key.split('.')
        for part in path:
            node = node[part]
        node[last] = value
    with DefaultScope.overwrite_default_scope('ddetr_plugin'):
        return MODELS.build(cfg)


def test_the_demo_config_builds_without_warning(model_cfg):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = _build(model_cfg)
    assert not [w for w in caught if 'max_per_img' in str(w.message)]
    assert model.transformer.num_feature_levels == 3


@pytest.mark.parametrize('changes,message', [
    ({'neck.num_outs': 4},
     r'neck.num_outs=4 but transformer.num_feature_levels=3'),
    ({'backbone.out_indices': (2, 4, 6)},
     r'backbone.out_indices=\(2, 4, 6\) gives 3 maps but '
     r'neck.in_channels=\[96, 320\] expects 2'),
    ({'backbone.out_indices': (5, 6)},
     r'outputs channels \[160, 320\] but neck.in_channels=\[96, 320\]'),
    ({'transformer.num_feature_levels': 4, 'neck.num_outs': 4},
     r'encoder.layers.0.self_attn.num_levels=3 differs from '
     r'num_feature_levels=4'),
    ({'test_cfg.max_per_img': 400, 'transformer.num_queries': 100},
     r'test_cfg.max_per_img=400 exceeds transformer.num_queries=100 x '
     r'bbox_head.num_classes=3'),
])
def test_mistake_named_at_build_time(model_cfg, changes, message):
    with pytest.raises(ValueError, match=message):
        _build(model_cfg, **changes)


def test_fewer_queries_than_detections_warns(model_cfg):
    with pytest.warns(UserWarning, match=r'num_queries=50 < '
                      r'test_cfg.max_per_img=100'):
        model = _build(model_cfg, **{'transformer.num_queries': 50})
    assert model.transformer.num_queries == 50


def test_backbone_probe_keeps_batch_norm_statistics(model_cfg):
    model = _build(model_cfg)
    bn = next(m for m in model.backbone.modules()
              if type(m).__name__ == 'BatchNorm2d')
    assert bn.num_batches_tracked.item() == 0  # the probe ran in eval mode
    assert model.backbone.training
