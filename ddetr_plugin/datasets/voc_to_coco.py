"""Convert a Pascal VOC style dataset (e.g. BCCD) to COCO detection json.

Layout read (``voc_root``)::

    voc_root/Annotations/<id>.xml
    voc_root/JPEGImages/<id>.jpg
    voc_root/ImageSets/Main/<split>.txt      # one image id per line

Layout written (``out_dir``)::

    out_dir/annotations/<split>.json

Images are not copied. ``file_name`` in the json is the image file name
relative to ``voc_root/JPEGImages``, so mmdet's ``CocoDataset`` must be given
``data_prefix=dict(img=<voc_root>/JPEGImages/)``; for BCCD run from the repo
root::

    data_root = ''
    ann_file = 'data/bccd/annotations/train.json'        # out_dir/...
    data_prefix = dict(img='../shared/data/bccd/BCCD/JPEGImages/')
    metainfo = dict(classes=('RBC', 'WBC', 'Platelets'))  # same order!

Box convention (the same as mmdet's ``tools/dataset_converters/
pascal_voc.py`` and ``XMLDataset``): VOC ``bndbox`` values are 1-based
inclusive pixel indices; 1 is subtracted from all four, giving the 0-based
corners ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax - 1, y2 = ymax - 1``, and
the COCO box is ``[x1, y1, x2 - x1, y2 - y1]`` in pixels, i.e.
``w = xmax - xmin``, ``h = ymax - ymin``. ``area = w * h``.

A box is dropped (``DroppedBoxWarning`` naming the xml file and the box, and
counted in the returned statistics) when after conversion ``w <= 0`` or
``h <= 0``, or when it is not inside the image ``[0, width] x [0, height]``.

``difficult=1`` objects are kept with ``iscrowd=1``, as mmdet's converter
does: ``CocoDataset`` turns them into ``ignore_flag=1`` instances (what
``XMLDataset`` does with difficult objects) and COCOeval treats them as
ignore regions. ``truncated`` is not used (the box is an ordinary one), as in
mmdet.

Category ids are ``1..K`` in the order of ``classes``. mmdet's
``CocoDataset`` maps categories to labels in the json's category order, so
the config's ``metainfo['classes']`` must list the classes in that order.
"""
import json
import os
import os.path as osp
import warnings
import xml.etree.ElementTree as ET
from typing import Dict, List, Sequence, Tuple

DEFAULT_SPLITS = ('train', 'val', 'test')
_BOX_FIELDS = ('xmin', 'ymin', 'xmax', 'ymax')


class DroppedBoxWarning(UserWarning):
    """Warned for each degenerate or out-of-image VOC box that is dropped."""


def _text(elem: ET.Element, tag: str, where: str) -> str:
    """Return the stripped text of child ``tag``; ValueError if absent."""
    child = elem.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise ValueError(f'{where}: missing or empty <{tag}>')
    return child.text.strip()


def _number(elem: ET.Element, tag: str, where: str) -> float:
    """Return child ``tag`` parsed as a number; ValueError naming it if not."""
    text = _text(elem, tag, where)
    try:
        return float(text)
    except ValueError:
        raise ValueError(f'{where}: <{tag}> is not a number: {text!r}') \
            from None


def format_voc_box(voc_box: Sequence[float]) -> str:
    """``'xmin=.., ymin=.., xmax=.., ymax=..'``, the values as in the file
    (the ``voc_box`` of a dropped-box record of :func:`parse_voc_xml`)."""
    return ', '.join(f'{k}={v:g}' for k, v in zip(_BOX_FIELDS, voc_box))


def _image_size(root: ET.Element, xml_path: str,
                img_path: str) -> Tuple[int, int]:
    """Width and height (pixels) from ``<size>``, or from the image header
    when ``<size>`` is missing or zero."""
    size = root.find('size')
    if size is not None:
        width = int(_number(size, 'width', f'{xml_path} <size>'))
        height = int(_number(size, 'height', f'{xml_path} <size>'))
        if width > 0 and height > 0:
            return width, height
    from PIL import Image  # only needed for xml files without a size
    with Image.open(img_path) as img:
        return img.size


def parse_voc_xml(xml_path: str, img_path: str, class_ids: Dict[str, int]
                  ) -> Tuple[Tuple[int, int], List[dict], List[dict]]:
    """Parse one VOC annotation file into COCO-style boxes.

    Args:
        xml_path (str): The VOC xml file.
        img_path (str): Its image; only read when the xml has no usable
            ``<size>``.
        class_ids (dict[str, int]): Class name -> COCO category id.

    Returns:
        tuple: ``((width, height), kept, dropped)``. ``kept`` holds dicts
        with ``bbox`` ([x, y, w, h], pixels, 0-based, see the module
        docstring), ``area``, ``category_id`` and ``iscrowd`` (1 for
        ``difficult`` objects); ``dropped`` holds dicts with ``xml``,
        ``index`` (of the ``<object>``), ``name``, ``voc_box`` (xmin, ymin,
        xmax, ymax as in the file) and ``reason``, one per box that was
        dropped (and warned about with ``DroppedBoxWarning``).

    Raises:
        FileNotFoundError: ``xml_path`` does not exist.
        ValueError: The xml is malformed, a required field (``name``,
            ``bndbox`` and its coordinates, ``size``) is missing or not a
            number, or an object's class is not in ``class_ids``; the
            message names the file and the field or name.
    """
    if not osp.isfile(xml_path):
        raise FileNotFoundError(f'VOC annotation file not found: {xml_path}')
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as err:
        raise ValueError(f'{xml_path}: malformed xml: {err}') from None
    width, height = _image_size(root, xml_path, img_path)

    kept, dropped = [], []
    for idx, obj in enumerate(root.findall('object')):
        where = f'{xml_path} <object> #{idx}'
        name = _text(obj, 'name', where)
        if name not in class_ids:
            raise ValueError(
                f'{xml_path}: object #{idx} has unknown class name {name!r}; '
                f'expected one of {list(class_ids)} (pass --classes)')
        bnd = obj.find('bndbox')
        if bnd is None:
            raise ValueError(f'{where} ({name}): missing <bndbox>')
        voc_box = [_number(bnd, k, f'{where} ({name}) <bndbox>')
                   for k in _BOX_FIELDS]
        diff = obj.find('difficult')
        difficult = diff is not None and diff.text is not None \
            and int(float(diff.text.strip() or 0)) != 0

        # 1-based inclusive -> 0-based corners, as mmdet does.
        x1, y1, x2, y2 = (v - 1 for v in voc_box)
        w, h = x2 - x1, y2 - y1
        reason = None
        if w <= 0 or h <= 0:
            reason = f'non-positive size w={w:g} h={h:g}'
        elif x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            reason = (f'outside the image {width}x{height} '
                      f'(0-based x1={x1:g} y1={y1:g} x2={x2:g} y2={y2:g})')
        if reason is not None:
            warnings.warn(
                f'{xml_path}: dropping box #{idx} {name} '
                f'({format_voc_box(voc_box)}): {reason}', DroppedBoxWarning,
                stacklevel=2)
            dropped.append(dict(xml=xml_path, index=idx, name=name,
                                voc_box=voc_box, reason=reason))
            continue
        kept.append(dict(bbox=[x1, y1, w, h], area=w * h,
                         category_id=class_ids[name],
                         iscrowd=int(difficult)))
    return (width, height), kept, dropped


def _read_split(voc_root: str, split: str) -> List[str]:
    """Image ids of ``ImageSets/Main/<split>.txt``; errors name the file."""
    list_file = osp.join(voc_root, 'ImageSets', 'Main', f'{split}.txt')
    if not osp.isfile(list_file):
        raise FileNotFoundError(f'split list not found: {list_file}')
    with open(list_file, encoding='utf-8') as f:
        ids = [line.split()[0] for line in f if line.strip()]
    seen = set()
    for img_id in ids:
        if img_id in seen:
            raise ValueError(f'{list_file}: image id {img_id!r} is listed '
                             'twice')
        seen.add(img_id)
    return ids


def convert_voc_split(voc_root: str, split: str, classes: Sequence[str]
                      ) -> Tuple[dict, dict]:
    """Convert one split of a VOC dataset to a COCO detection dict.

    Args:
        voc_root (str): Folder with ``Annotations/``, ``JPEGImages/`` and
            ``ImageSets/Main/``.
        split (str): Name of the list file ``ImageSets/Main/<split>.txt``.
        classes (Sequence[str]): Class names; category id ``i + 1`` is
            ``classes[i]``.

    Returns:
        tuple: ``(coco, stats)``. ``coco`` is the COCO dict (``images`` with
        ids ``1..N`` in list order and ``file_name`` relative to
        ``voc_root/JPEGImages``; ``annotations`` with ids ``1..M``, boxes in
        pixels as described in the module docstring; ``categories``).
        ``stats`` has ``images``, ``boxes_kept``, ``boxes_dropped``,
        ``crowd`` (difficult boxes kept as ``iscrowd=1``) and ``dropped``
        (the list of dropped-box records from :func:`parse_voc_xml`).

    Raises:
        FileNotFoundError: The list file, an xml file or an image is
            missing (the message names it).
        ValueError: Empty or duplicate ``classes``, a duplicate image id, or
            any error of :func:`parse_voc_xml`.
    """
    classes = list(classes)
    if not classes:
        raise ValueError('classes must not be empty')
    if len(set(classes)) != len(classes):
        raise ValueError(f'classes contains duplicates: {classes}')
    class_ids = {name: i + 1 for i, name in enumerate(classes)}
    img_dir = osp.join(voc_root, 'JPEGImages')

    images, annotations, dropped = [], [], []
    for image_id, img_name in enumerate(_read_split(voc_root, split), 1):
        xml_path = osp.join(voc_root, 'Annotations', f'{img_name}.xml')
        file_name = f'{img_name}.jpg'
        img_path = osp.join(img_dir, file_name)
        if not osp.isfile(img_path):
            raise FileNotFoundError(
                f'image of {img_name!r} (split {split!r}) not found: '
                f'{img_path}')
        (width, height), kept, drop = parse_voc_xml(xml_path, img_path,
                                                    class_ids)
        images.append(dict(id=image_id, file_name=file_name, width=width,
                           height=height))
        for ann in kept:
            ann.update(id=len(annotations) + 1, image_id=image_id)
            annotations.append(ann)
        dropped.extend(drop)

    coco = dict(
        info=dict(
            description=f'{osp.basename(osp.normpath(voc_root))} {split}, '
            'converted from Pascal VOC by ddetr_plugin',
            image_dir=img_dir,
            bbox_convention='[x, y, w, h] pixels, 0-based: x = xmin - 1, '
            'y = ymin - 1, w = xmax - xmin, h = ymax - ymin (mmdet)'),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[dict(id=i, name=n, supercategory='none')
                    for n, i in class_ids.items()])
    stats = dict(images=len(images), boxes_kept=len(annotations),
                 boxes_dropped=len(dropped),
                 crowd=sum(a['iscrowd'] for a in annotations),
                 dropped=dropped)
    return coco, stats


def convert_voc_to_coco(voc_root: str, out_dir: str,
                        splits: Sequence[str] = DEFAULT_SPLITS, *,
                        classes: Sequence[str]) -> Dict[str, dict]:
    """Convert several splits and write ``out_dir/annotations/<split>.json``.

    All splits are converted before anything is written, so a bad file
    leaves no partial output.

    Args:
        voc_root (str): The VOC folder (see :func:`convert_voc_split`).
        out_dir (str): Output folder; ``annotations/`` is created in it.
        splits (Sequence[str]): Split names (list files in
            ``ImageSets/Main``).
        classes (Sequence[str]): Class names in category-id order
            (keyword only, required: the order the config's
            ``metainfo['classes']`` must repeat, e.g. BCCD's
            ``('RBC', 'WBC', 'Platelets')``).

    Returns:
        dict: split -> stats (see :func:`convert_voc_split`), plus
        ``ann_file`` (the path written).

    Raises:
        FileNotFoundError: ``voc_root`` or a file inside it is missing.
        ValueError: See :func:`convert_voc_split`.
    """
    if not osp.isdir(voc_root):
        raise FileNotFoundError(f'VOC root folder not found: {voc_root}')
    results = {split: convert_voc_split(voc_root, split, classes)
               for split in splits}
    ann_dir = osp.join(out_dir, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    all_stats = {}
    for split, (coco, stats) in results.items():
        ann_file = osp.join(ann_dir, f'{split}.json')
        with open(ann_file, 'w', encoding='utf-8') as f:
            json.dump(coco, f)
        all_stats[split] = dict(stats, ann_file=ann_file)
    return all_stats
