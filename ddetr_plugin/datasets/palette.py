"""A drawing colour for every class of a dataset config.

mmengine merges a config's ``metainfo`` into its base's key by key: a
config that inherits the BCCD demo config and sets only
``metainfo.classes`` to 12 classes keeps the base's 3-colour ``palette``,
and mmdet's ``DetLocalVisualizer`` then fails (``The length of palette
should not be less than num_classes``) the first time it draws a box of
class 3 or above: at a validation, or after the whole schedule in
``tools/test.py``. :func:`complete_palettes` gives the missing classes
colours before anything is built (``DeformableDETRRunner`` calls it on
every dataloader config and logs a warning for each completion).
"""
from typing import Any, List

from mmdet.visualization.palette import get_palette

from .wrapped_configs import dataset_configs


def complete_palette(metainfo: dict) -> int:
    """Extend ``metainfo['palette']`` to one colour per class, in place.

    The missing colours are mmdet's ``'random'`` palette (fixed-seed
    colours, as mmdet uses for data sets without one) past the given ones.
    A ``metainfo`` without ``classes`` or ``palette`` (the dataset class's
    own palette then applies) is left as it is.

    Args:
        metainfo (dict): with ``classes`` (sequence of str) and
            ``palette`` (list of (R, G, B) tuples, 0-255).

    Returns:
        int: how many colours were added (0 when nothing was missing).
    """
    classes, palette = metainfo.get('classes'), metainfo.get('palette')
    if classes is None or not isinstance(palette, (list, tuple)):
        return 0
    missing = len(classes) - len(palette)
    if missing <= 0:
        return 0
    generated = get_palette('random', len(classes))
    metainfo['palette'] = list(palette) + generated[len(palette):]
    return missing


def complete_palettes(dataloader_cfg: Any, split: str) -> List[str]:
    """:func:`complete_palette` on every dataset of a dataloader config.

    Args:
        dataloader_cfg: ``train_dataloader``/``val_dataloader``/
            ``test_dataloader`` config (dict; anything else is skipped).
        split (str): its name, for the messages.

    Returns:
        list[str]: one message per completed palette, naming the split, the
        classes and how many colours were generated.
    """
    if not isinstance(dataloader_cfg, dict):
        return []
    messages = []
    for dataset_cfg in dataset_configs(dataloader_cfg.get('dataset')):
        metainfo = dataset_cfg.get('metainfo')
        if not isinstance(metainfo, dict):
            continue
        added = complete_palette(metainfo)
        if added:
            given = len(metainfo['palette']) - added
            messages.append(
                f'{split}: metainfo.palette has {given} colours for '
                f'{len(metainfo["classes"])} classes (a base config\'s '
                f'palette?); generated colours for the last {added}')
    return messages
