"""``PretrainedClassesHook``: fine-tune from a checkpoint of any layout and
of other classes with ``load_from``.

Extends what ``DeformableDETR``'s load pre-hook
(:func:`ddetr_plugin.converters.load_hook.convert_layout_on_load`) does for
every loading path: after the Runner reads ``load_from``
(``after_load_checkpoint``), the weights are converted to our layout and,
when the checkpoint's class names differ from the dataset's, the rows of
the classes both have are kept and the others initialised
(:func:`ddetr_plugin.converters.class_rows.remap_class_rows`), with a log
line listing the kept and the new classes.
"""
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from ddetr_plugin.converters.class_rows import remap_class_rows
from ddetr_plugin.converters.layouts import (any_to_ddetr, checkpoint_classes,
                                             unwrap_state_dict)
from ddetr_plugin.converters.load_hook import check_neck_bias
from ddetr_plugin.registry import HOOKS


@HOOKS.register_module()
class PretrainedClassesHook(Hook):
    """Load a checkpoint of any layout, and of other classes, with
    ``load_from``.

    After the Runner reads ``load_from`` (``after_load_checkpoint``), the
    weights are converted to our layout; then, if the names of the
    checkpoint's class rows (:func:`~ddetr_plugin.converters.layouts.
    checkpoint_classes`) differ from the dataset's classes (the
    ``metainfo`` the Runner's loops give the visualizer), every
    classification layer is rebuilt by
    :func:`~ddetr_plugin.converters.class_rows.remap_class_rows`, starting
    from the model's initialised weights. A log line lists the kept and the
    new classes. Resumed checkpoints (our layout, same classes) pass
    unchanged.

    Raises:
        ValueError: the checkpoint's class rows have no names (not 80 or 91
            rows and no ``meta['dataset_meta']['classes']``) and their
            number differs from the dataset's classes.
    """

    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Replace ``checkpoint['state_dict']`` by its weights in our layout
        with the dataset's class rows (see the class docstring)."""
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        state_dict, layout = any_to_ddetr(unwrap_state_dict(checkpoint))
        if layout != 'ddetr':
            print_log(f'checkpoint in the {layout} layout: converted to '
                      "ddetr_plugin's", logger='current')
            check_neck_bias(model, state_dict)
        dataset_meta = runner.visualizer.dataset_meta or {}
        classes = dataset_meta.get('classes')
        rows = len(state_dict['bbox_head.cls_branches.0.bias'])
        names = checkpoint_classes(checkpoint, rows)
        if classes is not None and names is None and rows != len(classes):
            raise ValueError(
                f'the checkpoint has {rows} classes without names (no '
                "meta['dataset_meta']['classes']), the dataset "
                f'{len(classes)}: cannot match them')
        if classes is not None and names is not None and \
                tuple(names) != tuple(classes):
            # two-stage Deformable DETR's proposals score class 0 as
            # foreground; DINO's score every class
            proposal_layer = model.bbox_head.num_pred_layer - 1 if (
                model.as_two_stage and
                not model.transformer.proposals_score_every_class) else None
            state_dict, kept, new = remap_class_rows(
                state_dict, names, classes, model.state_dict(),
                proposal_layer)
            print_log(f'fine-tuning on {len(classes)} classes: kept the '
                      f'checkpoint\'s rows of {kept}, initialised {new}',
                      logger='current')
        checkpoint['state_dict'] = state_dict
