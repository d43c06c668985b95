"""Convert a Pascal VOC dataset (e.g. BCCD) to COCO json.

Usage (from the repo root)::

    python tools/dataset_converters/voc_to_coco.py \
        ../shared/data/bccd/BCCD data/bccd \
        [--splits train val test] [--classes RBC WBC Platelets]

writes ``data/bccd/annotations/{train,val,test}.json``; images stay where
they are (config: ``data_prefix=dict(img='../shared/data/bccd/BCCD/
JPEGImages/')``). Prints per split the images, boxes kept and dropped (each
dropped box with its file and reason) and the output file. See
``ddetr_plugin/datasets/voc_to_coco.py`` for the box convention and what is
dropped.

``--classes`` defaults to BCCD's (the demo dataset); any other dataset passes
its own, in the order of its config's ``metainfo['classes']``.
"""
import argparse
import os.path as osp
import warnings

from ddetr_plugin.datasets.voc_to_coco import (DEFAULT_SPLITS,
                                               DroppedBoxWarning,
                                               convert_voc_to_coco,
                                               format_voc_box)

#: The demo's classes (BCCD), in the order of the BCCD configs'
#: ``metainfo['classes']`` (configs/_base_/datasets/bccd_detection.py):
#: category ids 1, 2, 3. The default of ``--classes``.
BCCD_CLASSES = ('RBC', 'WBC', 'Platelets')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert a Pascal VOC dataset to COCO json '
        '(OUT_DIR/annotations/<split>.json). Images are not copied: '
        'use data_prefix=dict(img=<SRC_VOC_ROOT>/JPEGImages/).')
    parser.add_argument('voc_root', metavar='SRC_VOC_ROOT',
                        help='folder with Annotations/, JPEGImages/, '
                        'ImageSets/Main/')
    parser.add_argument('out_dir', metavar='OUT_DIR')
    parser.add_argument('--splits', nargs='+', default=list(DEFAULT_SPLITS))
    parser.add_argument(
        '--classes', nargs='+', default=list(BCCD_CLASSES),
        help='class names, in the order of the config\'s '
        'metainfo[\'classes\']: category ids 1..K follow it, and mmdet\'s '
        'CocoDataset numbers its labels in that order. The default is '
        'BCCD\'s (the demo, `make data`: %(default)s); pass your dataset\'s '
        'own, an object of another class is an error naming it')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with warnings.catch_warnings():
        # The per-box lines are printed below; do not repeat them.
        warnings.simplefilter('ignore', DroppedBoxWarning)
        stats = convert_voc_to_coco(args.voc_root, args.out_dir,
                                    args.splits, classes=args.classes)
    for split, st in stats.items():
        print(f'{split}: {st["images"]} images, {st["boxes_kept"]} boxes '
              f'kept ({st["crowd"]} difficult as iscrowd), '
              f'{st["boxes_dropped"]} dropped -> {st["ann_file"]}')
        for d in st['dropped']:
            print(f'  dropped {d["xml"]} #{d["index"]} {d["name"]} '
                  f'({format_voc_box(d["voc_box"])}): {d["reason"]}')
    img_dir = osp.join(args.voc_root, 'JPEGImages', '')
    print(f"config: data_prefix=dict(img='{img_dir}'), "
          f'metainfo=dict(classes={tuple(args.classes)})')


if __name__ == '__main__':
    main()
