"""Sampling-point pictures (paper Figure 6, ``ddetr_plugin.visualization``):
points are placed from the model's own ``sampling_locations`` and land on
the pixels computed independently from the reference boxes and the known
offsets, under resizing and padding; the capture leaves the outputs
unchanged; the figures, the CLI and the validation hooks write real
pictures."""
import copy
import warnings

import mmcv
import numpy as np
import pytest
import torch
from helpers.ddetr_model_utils import (build_our_model, load_our_config,
                                       perturb_)
from helpers.paths import BCCD_CLASSES, REPO_ROOT, shared_data_dir
from helpers.tiny_training import run_tool, validation_runner

from ddetr_plugin.datasets.preprocessing import Preprocessor, read_image
from ddetr_plugin.visualization import (capture_sampling_points,
                                        decoder_points, encoder_points,
                                        sampling_point_figures)

# 640x480 -> 440x330, padded to 448x384: the levels of strides 8, 16 and
# 32 have padding (the stride-64 one is all image after nearest resizing)
SCALE = (440, 330)
IMAGE = 'BloodImage_00007.jpg'


@pytest.fixture(scope='module')
def model_cfg():
    cfg = load_our_config('deformable-detr-refine_r50_16xb2-50e_coco.py')
    cfg.model.data_preprocessor.pad_size_divisor = 64
    model = build_our_model(cfg)
    perturb_(model, seed=3)
    return cfg, model.eval()


def _inputs(cfg):
    preprocessor = Preprocessor(
        dict(resize=dict(type='mmdet.Resize', scale=SCALE, keep_ratio=True),
             data_preprocessor=dict(cfg.model.data_preprocessor,
                                    type='mmdet.DetDataPreprocessor')))
    image = read_image(shared_data_dir('bccd', 'BCCD', 'JPEGImages', IMAGE))
    return image, *preprocessor(image)


def _set_offsets(attention, offsets):
    """Offsets independent of the query: zero weight, bias ``offsets``
    (M, L, P, 2)."""
    with torch.no_grad():
        attention.sampling_offsets.weight.zero_()
        attention.sampling_offsets.bias.copy_(offsets.reshape(-1))


def test_capture_leaves_outputs_unchanged(model_cfg):
    cfg, model = model_cfg
    _, inputs, sample = _inputs(cfg)
    with torch.no_grad():
        before = model.predict(inputs, [sample.clone()])[0].pred_instances
    captured = capture_sampling_points(model, inputs, sample, topk=5)
    # the five best of predict are the captured detections
    torch.testing.assert_close(captured['scores'], before.scores[:5])
    torch.testing.assert_close(captured['boxes'], before.bboxes[:5])
    names = sorted(captured['records'])
    assert len(names) == 4  # 2 encoder self-attn + 2 decoder cross-attn


def test_decoder_points_land_on_independent_pixels(model_cfg):
    """Known offsets, relative to the reference box (box refinement): the
    drawn pixel is (cx + dx / P * w / 2, cy + dy / P * h / 2) of the layer's
    reference box, in original-image pixels, whatever the level and the
    padding of its map."""
    cfg, model = model_cfg
    image, inputs, sample = _inputs(cfg)
    attention = model.transformer.decoder.layers[-1].cross_attn
    num_heads, num_levels, num_points = (attention.num_heads,
                                         attention.num_levels,
                                         attention.num_points)
    gen = torch.Generator().manual_seed(0)
    offsets = torch.randn(num_heads, num_levels, num_points, 2,
                          generator=gen)
    _set_offsets(attention, offsets)
    captured = capture_sampling_points(model, inputs, sample, topk=3)
    valid_ratios = captured['valid_ratios']
    assert (valid_ratios[:3, 1] < 1).all()  # padding
    assert not torch.allclose(valid_ratios[0], valid_ratios[-1])
    drawn = decoder_points(captured, layer=-1)

    ori_h, ori_w = image.shape[:2]
    original = torch.tensor([ori_w, ori_h], dtype=torch.float32)
    for query in captured['queries'].tolist():
        # the last layer's input boxes: the refined boxes of layer 0
        cx, cy, w, h = captured['references'][1][query].tolist()
        expected = (torch.tensor([cx, cy]) + offsets / num_points *
                    torch.tensor([w, h]) * 0.5) * original
        torch.testing.assert_close(drawn['points'][query], expected,
                                   rtol=0, atol=1e-3)
        torch.testing.assert_close(drawn['reference_points'][query],
                                   torch.tensor([cx, cy]) * original)


def test_encoder_points_of_a_pixel(model_cfg):
    """Zero offsets: every point of the query at (x, y) is its level-0 cell
    centre, within half a cell of (x, y); an offset of d cells on level l
    moves the point d cells of level l (image size / unpadded cells)."""
    cfg, model = model_cfg
    image, inputs, sample = _inputs(cfg)
    attention = model.transformer.encoder.layers[-1].self_attn
    offsets = torch.zeros(attention.num_heads, attention.num_levels,
                          attention.num_points, 2)
    offsets[0, :, 0] = torch.tensor([1.0, -2.0])  # head 0, point 0
    _set_offsets(attention, offsets)
    captured = capture_sampling_points(model, inputs, sample, topk=1)
    pixel = (321.0, 123.0)
    drawn = encoder_points(captured, pixel, layer=-1)

    ori_h, ori_w = image.shape[:2]
    feats = model.extract_feat(inputs)
    masks = model.get_mlvl_masks([sample], feats)
    # unpadded cells (w, h) of each level, counted on the padding masks
    cells = torch.tensor([[(~m[0, 0]).sum(), (~m[0, :, 0]).sum()]
                          for m in masks], dtype=torch.float32)
    cell_size = torch.tensor([ori_w, ori_h]) / cells  # original pixels
    centre = drawn['reference_point']
    assert ((centre - torch.tensor(pixel)).abs() <= cell_size[0] / 2).all()
    unmoved = drawn['points'][1:]  # heads 1.. have zero offsets
    torch.testing.assert_close(unmoved, centre.expand_as(unmoved))
    moved = drawn['points'][0, :, 0]  # (L, 2)
    torch.testing.assert_close(
        moved, centre + torch.tensor([1.0, -2.0]) * cell_size,
        rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match='outside the image'):
        encoder_points(captured, (ori_w + 5, 10))
    with pytest.raises(IndexError, match='encoder has 2 layers'):
        encoder_points(captured, pixel, layer=2)
    with pytest.raises(IndexError, match='decoder layer -3 does not exist'):
        decoder_points(captured, layer=-3)


def test_figures(model_cfg):
    cfg, model = model_cfg
    image, inputs, sample = _inputs(cfg)
    captured = capture_sampling_points(model, inputs, sample, topk=2)
    rgb = mmcv.bgr2rgb(image)
    figures = sampling_point_figures(rgb, captured, ['a'] * 80,
                                     pixel=(100, 200))
    assert sorted(figures) == ['det0_a', 'det1_a', 'encoder_x100_y200']
    num_levels = len(captured['valid_ratios'])
    for figure in figures.values():
        assert figure.shape == (480, 640 * (num_levels + 1), 3)
        assert figure.dtype == np.uint8
        # points, box and labels are drawn on every panel
        for panel in np.split(figure, num_levels + 1, axis=1):
            assert (panel != rgb).any(-1).mean() > 0.001


def _write_small_checkpoint(tmp_path, cfg, model):
    config = tmp_path / 'small.py'
    cfg.dump(str(config))
    checkpoint = tmp_path / 'small.pth'
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    return config, checkpoint


def test_cli_writes_pictures(model_cfg, tmp_path):
    cfg, model = model_cfg
    cfg = copy.deepcopy(cfg)
    cfg.test_dataloader.dataset.pipeline[1].scale = SCALE
    config, checkpoint = _write_small_checkpoint(tmp_path, cfg, model)
    image = shared_data_dir('bccd', 'BCCD', 'JPEGImages', IMAGE)
    run_tool('tools/analysis_tools/vis_sampling_points.py', config,
             checkpoint, image, '--out-dir', tmp_path / 'out', '--topk', '2',
             '--pixel', '320', '240')
    written = sorted(p.name for p in (tmp_path / 'out').iterdir())
    assert len(written) == 3 and 'encoder_x320_y240.png' in written
    assert mmcv.imread(str(tmp_path / 'out' / written[0])).shape[:2] == (
        480, 640 * 5)


def test_bccd_config_hooks_log_pictures_at_validation(tmp_path):
    """The BCCD demo config's hooks, in a real Runner validating a small
    model on two real val images: each validation writes the predictions of
    the fixed val images (beside ground truth) and the sampling points of
    the chosen ones, to the local backend and TensorBoard."""
    from mmengine.config import Config

    from ddetr_plugin.datasets.voc_to_coco import convert_voc_to_coco
    bccd = shared_data_dir('bccd', 'BCCD')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        convert_voc_to_coco(str(bccd), str(tmp_path), splits=('val', ),
                            classes=BCCD_CLASSES)
    ann_file = str(tmp_path / 'annotations' / 'val.json')
    cfg = Config.fromfile(
        REPO_ROOT / 'configs' / 'deformable_detr' /
        'deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py')
    cfg.model.backbone.init_cfg = None
    cfg.model.transformer.encoder.num_layers = 1
    cfg.model.transformer.decoder.num_layers = 1
    cfg.val_dataloader.dataset.ann_file = ann_file
    cfg.val_dataloader.dataset.indices = 2  # BloodImage_00000, _00002
    cfg.val_dataloader.num_workers = 0
    cfg.val_dataloader.persistent_workers = False
    cfg.val_evaluator.ann_file = ann_file
    runner = validation_runner(cfg, tmp_path / 'work')
    runner.val()
    images = {p.name for p in (tmp_path / 'work').glob(
        '*/vis_data/vis_image/*.png')}
    assert {'val_BloodImage_00000.jpg_0.png',
            'val_BloodImage_00002.jpg_0.png'} <= images
    points = sorted(n for n in images if n.startswith('sampling_points_'))
    assert len(points) == 6  # 2 images x top 3
    assert all(n.startswith(('sampling_points_BloodImage_00000_det',
                             'sampling_points_BloodImage_00002_det'))
               for n in points)
    # ground truth beside predictions: twice the image width
    drawn = mmcv.imread(str(next((tmp_path / 'work').glob(
        '*/vis_data/vis_image/val_BloodImage_00000.jpg_0.png'))))
    assert drawn.shape[:2] == (480, 1280)
    assert list((tmp_path / 'work').glob('*/vis_data/events.out.tfevents*'))
