"""Registries of the ``ddetr_plugin`` scope.

Every registry is a child of MMDetection's registry of the same kind, so a
config with ``default_scope='ddetr_plugin'`` resolves our component names
first and falls back to mmdet's (``ResNet``, ``CocoDataset``, ``CocoMetric``)
and then mmengine's (hooks, optimizers, visualizer backends), with or without
an explicit ``mmdet.`` prefix. The layout follows mmyolo's ``registry.py``.

A registry with ``locations`` imports them the first time a name is looked
up in our scope, which registers our components there without
``custom_imports``: ``ddetr_plugin.models`` (models, task utils),
``ddetr_plugin.datasets.transforms`` (transforms),
``ddetr_plugin.engine.hooks`` (hooks), ``ddetr_plugin.evaluation``
(metrics), ``ddetr_plugin.visualization`` (visualizer backends).
"""
from mmdet.registry import DATA_SAMPLERS as MMDET_DATA_SAMPLERS
from mmdet.registry import DATASETS as MMDET_DATASETS
from mmdet.registry import EVALUATOR as MMDET_EVALUATOR
from mmdet.registry import HOOKS as MMDET_HOOKS
from mmdet.registry import LOG_PROCESSORS as MMDET_LOG_PROCESSORS
from mmdet.registry import LOOPS as MMDET_LOOPS
from mmdet.registry import METRICS as MMDET_METRICS
from mmdet.registry import MODEL_WRAPPERS as MMDET_MODEL_WRAPPERS
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMDET_OPTIM_WRAPPER_CONSTRUCTORS
from mmdet.registry import OPTIM_WRAPPERS as MMDET_OPTIM_WRAPPERS
from mmdet.registry import OPTIMIZERS as MMDET_OPTIMIZERS
from mmdet.registry import PARAM_SCHEDULERS as MMDET_PARAM_SCHEDULERS
from mmdet.registry import RUNNER_CONSTRUCTORS as MMDET_RUNNER_CONSTRUCTORS
from mmdet.registry import RUNNERS as MMDET_RUNNERS
from mmdet.registry import TASK_UTILS as MMDET_TASK_UTILS
from mmdet.registry import TRANSFORMS as MMDET_TRANSFORMS
from mmdet.registry import VISBACKENDS as MMDET_VISBACKENDS
from mmdet.registry import VISUALIZERS as MMDET_VISUALIZERS
from mmdet.registry import \
    WEIGHT_INITIALIZERS as MMDET_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

_MODELS = ['ddetr_plugin.models']


def _child(name, parent, locations=()):
    """A registry of our scope under ``parent``.

    mmengine imports only the child's ``locations`` before a look-up, never
    the parent's, so the child also lists the modules that fill the parent
    (e.g. ``mmdet.datasets`` for CocoDataset); ours come first.
    """
    return Registry(
        name, parent=parent, locations=[*locations, *parent._locations])


RUNNERS = _child('runner', MMDET_RUNNERS)
RUNNER_CONSTRUCTORS = _child('runner constructor', MMDET_RUNNER_CONSTRUCTORS)
LOOPS = _child('loop', MMDET_LOOPS)
HOOKS = _child('hook', MMDET_HOOKS, ['ddetr_plugin.engine.hooks'])

DATASETS = _child('dataset', MMDET_DATASETS)
DATA_SAMPLERS = _child('data sampler', MMDET_DATA_SAMPLERS)
TRANSFORMS = _child('transform', MMDET_TRANSFORMS,
                    ['ddetr_plugin.datasets.transforms'])

MODELS = _child('model', MMDET_MODELS, _MODELS)
MODEL_WRAPPERS = _child('model_wrapper', MMDET_MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = _child('weight initializer', MMDET_WEIGHT_INITIALIZERS)

OPTIMIZERS = _child('optimizer', MMDET_OPTIMIZERS)
OPTIM_WRAPPERS = _child('optim_wrapper', MMDET_OPTIM_WRAPPERS)
OPTIM_WRAPPER_CONSTRUCTORS = _child('optimizer wrapper constructor',
                                    MMDET_OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = _child('parameter scheduler', MMDET_PARAM_SCHEDULERS)

METRICS = _child('metric', MMDET_METRICS, ['ddetr_plugin.evaluation'])
EVALUATOR = _child('evaluator', MMDET_EVALUATOR)

TASK_UTILS = _child('task util', MMDET_TASK_UTILS, _MODELS)

VISUALIZERS = _child('visualizer', MMDET_VISUALIZERS)
VISBACKENDS = _child('vis_backend', MMDET_VISBACKENDS,
                     ['ddetr_plugin.visualization'])
LOG_PROCESSORS = _child('log_processor', MMDET_LOG_PROCESSORS)
