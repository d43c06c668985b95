"""The ddetr_plugin registry scope resolves ours first, then mmdet/mmengine."""
import pytest
from mmengine.registry import DefaultScope, init_default_scope
from mmdet.registry import MODELS as MMDET_MODELS

from ddetr_plugin import registry
from ddetr_plugin.models.layers.msda_attention import \
    MultiScaleDeformableAttention


@pytest.fixture(autouse=True)
def plugin_scope():
    init_default_scope('ddetr_plugin')
    yield
    DefaultScope._instance_dict.pop('ddetr_plugin', None)


def test_registries_are_children_of_mmdet():
    for name in ('MODELS', 'TASK_UTILS', 'DATASETS', 'TRANSFORMS', 'METRICS',
                 'HOOKS', 'VISUALIZERS', 'VISBACKENDS', 'OPTIMIZERS',
                 'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS', 'LOOPS',
                 'RUNNERS', 'EVALUATOR', 'LOG_PROCESSORS'):
        ours = getattr(registry, name)
        assert ours.scope == 'ddetr_plugin', name
        assert ours.parent is not None and ours.parent.scope == 'mmdet', name


def test_our_names_resolve_first():
    from mmcv.ops import MultiScaleDeformableAttention as MmcvMSDA
    assert registry.MODELS.get('MultiScaleDeformableAttention') is \
        MultiScaleDeformableAttention
    assert MMDET_MODELS.get('MultiScaleDeformableAttention') is MmcvMSDA
    built = registry.MODELS.build(
        dict(type='MultiScaleDeformableAttention', embed_dims=32,
             num_heads=4))
    assert isinstance(built, MultiScaleDeformableAttention)


@pytest.mark.parametrize('registry_name,type_name,module', [
    ('MODELS', 'ResNet', 'mmdet.models.backbones'),
    ('MODELS', 'mmdet.ResNet', 'mmdet.models.backbones'),
    ('MODELS', 'SwinTransformer', 'mmdet.models.backbones'),
    ('MODELS', 'FocalLoss', 'mmdet.models.losses'),
    ('TASK_UTILS', 'FocalLossCost', 'mmdet.models.task_modules'),
    ('DATASETS', 'CocoDataset', 'mmdet.datasets'),
    ('DATASETS', 'mmdet.CocoDataset', 'mmdet.datasets'),
    ('TRANSFORMS', 'PackDetInputs', 'mmdet.datasets.transforms'),
    ('METRICS', 'CocoMetric', 'mmdet.evaluation'),
    ('HOOKS', 'CheckpointHook', 'mmengine.hooks'),
    ('HOOKS', 'DetVisualizationHook', 'mmdet.engine.hooks'),
    ('VISUALIZERS', 'DetLocalVisualizer', 'mmdet.visualization'),
    ('VISBACKENDS', 'TensorboardVisBackend', 'mmengine.visualization'),
    ('OPTIMIZERS', 'AdamW', 'torch.optim'),
])
def test_parent_names_resolve(registry_name, type_name, module):
    found = getattr(registry, registry_name).get(type_name)
    assert found is not None, type_name
    assert found.__module__.startswith(module), found.__module__


def test_mmdet_scope_reaches_ours_by_prefix():
    assert MMDET_MODELS.get('ddetr_plugin.MultiScaleDeformableAttention') is \
        MultiScaleDeformableAttention
