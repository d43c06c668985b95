"""Run a trained detector on an image or a folder of images.

Usage (from the repo root)::

    python tools/infer.py CONFIG CHECKPOINT IMAGE_OR_DIR [...] --out-dir DIR \
        [--score-thr 0.3] [--device cpu]

For every image ``<name>.<ext>`` it writes

* ``DIR/preds/<name>.json``: ``{"image", "width", "height", "score_thr",
  "classes", "bboxes_xyxy", "scores", "labels", "class_names"}``; boxes are
  ``[x1, y1, x2, y2]`` in pixels of the original image, ``labels`` are
  0-based indices into ``classes``; only detections with
  ``score >= score_thr`` are listed, highest score first;
* ``DIR/vis/<name>.<ext>``: the image with those detections drawn
  (mmdet ``DetLocalVisualizer``).

The model is built with mmdet's ``init_detector`` and run with
``inference_detector``; ``import ddetr_plugin`` comes first so the
``ddetr_plugin`` registry scope exists and Runner checkpoints load with
torch's ``weights_only=True`` default. A folder is read non-recursively
(``.jpg .jpeg .png .bmp .tif .tiff .webp``).
"""
import argparse
import json
from pathlib import Path

import ddetr_plugin  # noqa: F401  (first: registry scope, safe loading)
import ddetr_plugin.registry  # noqa: F401

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff',
                    '.webp')


def parse_args(argv=None):
    """Parse the command line; ``--score-thr`` must lie in [0, 1]."""
    parser = argparse.ArgumentParser(
        description='Detect objects in an image or a folder of images; '
        'writes preds/<name>.json and vis/<name> into --out-dir.')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('inputs', metavar='IMAGE_OR_DIR', nargs='+',
                        help='image files or folders of images')
    parser.add_argument('--out-dir', required=True,
                        help='output folder (created)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='keep detections with score >= this '
                        '(default: %(default)s)')
    parser.add_argument('--device', default='cpu',
                        help='torch device (default: %(default)s)')
    args = parser.parse_args(argv)
    if not 0.0 <= args.score_thr <= 1.0:
        parser.error(f'--score-thr must be in [0, 1], got {args.score_thr}')
    return args


def collect_images(path):
    """The image files to run on.

    Args:
        path (str | Path): An image file, or a folder whose files with an
            extension in :data:`IMAGE_EXTENSIONS` are taken (sorted, not
            recursive).

    Returns:
        list[Path]: The images.

    Raises:
        FileNotFoundError: ``path`` does not exist, or the folder has no
            image.
        ValueError: Two images share a file stem (their outputs would
            collide).
    """
    path = Path(path)
    if path.is_dir():
        images = sorted(p for p in path.iterdir()
                        if p.is_file() and p.suffix.lower() in
                        IMAGE_EXTENSIONS)
        if not images:
            raise FileNotFoundError(
                f'no image ({", ".join(IMAGE_EXTENSIONS)}) in folder {path}')
    elif path.is_file():
        images = [path]
    else:
        raise FileNotFoundError(f'image or folder not found: {path}')
    stems = [p.stem for p in images]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise ValueError(f'images in {path} share file stems {clashes}; '
                         'their outputs would overwrite each other')
    return images


def result_to_dict(result, image_path, classes, score_thr):
    """A ``DetDataSample`` as the json written per image.

    Args:
        result (DetDataSample): ``inference_detector`` output; its
            ``pred_instances.bboxes`` are xyxy pixels of the original image.
        image_path (Path): The input image.
        classes (Sequence[str]): Class names, indexed by label.
        score_thr (float): Detections below this score are left out.

    Returns:
        dict: See the module docstring.
    """
    pred = result.pred_instances
    keep = pred.scores >= score_thr
    scores = pred.scores[keep]
    order = scores.argsort(descending=True)
    bboxes = pred.bboxes[keep][order].cpu().tolist()
    labels = pred.labels[keep][order].cpu().tolist()
    height, width = result.ori_shape[:2]
    return dict(
        image=str(image_path), width=int(width), height=int(height),
        score_thr=score_thr, classes=list(classes),
        bboxes_xyxy=[[round(v, 2) for v in box] for box in bboxes],
        scores=[round(s, 4) for s in scores[order].cpu().tolist()],
        labels=labels, class_names=[classes[i] for i in labels])


def main(argv=None):
    """Parse the arguments, run the model on every image, write the json
    files and the drawn images; returns the list of json dicts."""
    args = parse_args(argv)
    for what, path in (('config', args.config),
                       ('checkpoint', args.checkpoint)):
        if not Path(path).is_file():
            raise SystemExit(f'error: {what} file not found: {path}')
    try:
        images = [img for path in args.inputs
                  for img in collect_images(path)]
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f'error: {err}')

    import mmcv
    from mmdet.apis import inference_detector, init_detector
    from mmdet.evaluation import get_classes
    from mmdet.visualization import DetLocalVisualizer

    model = init_detector(args.config, args.checkpoint, device=args.device)
    classes = tuple(model.dataset_meta['classes'])
    cfg_classes = model.cfg.test_dataloader.dataset.get(
        'metainfo', {}).get('classes')
    if cfg_classes and classes == tuple(get_classes('coco')) and \
            tuple(cfg_classes) != classes:
        # init_detector falls back to COCO names when the checkpoint has no
        # dataset_meta; the config's class list is the right one then.
        classes = tuple(cfg_classes)
        model.dataset_meta['classes'] = classes

    out_dir = Path(args.out_dir)
    (out_dir / 'preds').mkdir(parents=True, exist_ok=True)
    (out_dir / 'vis').mkdir(parents=True, exist_ok=True)
    visualizer = DetLocalVisualizer(name='ddetr_plugin_infer')
    visualizer.dataset_meta = model.dataset_meta

    outputs = []
    for image_path in images:
        result = inference_detector(model, str(image_path))
        record = result_to_dict(result, image_path, classes, args.score_thr)
        with open(out_dir / 'preds' / f'{image_path.stem}.json', 'w') as f:
            json.dump(record, f)
        visualizer.add_datasample(
            image_path.name, mmcv.imread(str(image_path), channel_order='rgb'),
            data_sample=result, draw_gt=False, show=False,
            pred_score_thr=args.score_thr,
            out_file=str(out_dir / 'vis' / image_path.name))
        print(f'{image_path}: {len(record["scores"])} detections '
              f'(score >= {args.score_thr})')
        outputs.append(record)
    print(f'wrote {len(outputs)} json files to {out_dir / "preds"} and '
          f'drawn images to {out_dir / "vis"}')
    return outputs


if __name__ == '__main__':
    main()
