"""Parity with Hugging Face transformers' ``DeformableDetrForObjectDetection``
(random weights, HF's own ResNet-50 backbone, no download): the converted
model gives HF's logits and boxes for every decoder layer, and HF's
post-processed top-100 detections, on real BCCD images of two sizes in one
padded batch."""
import mmcv
import pytest
import torch
from mmdet.structures import DetDataSample
from transformers import (DeformableDetrConfig,
                          DeformableDetrForObjectDetection, ResNetConfig)
from transformers.models.deformable_detr.image_processing_pil_deformable_detr \
    import DeformableDetrImageProcessorPil

from helpers.ddetr_model_utils import (VARIANTS, build_our_model,
                                       load_our_config, perturb_)
from helpers.paths import shared_data_dir
from ddetr_plugin.converters.hf_checkpoint import (convert_hf_checkpoint,
                                                   hf_to_ddetr)

D_MODEL, FFN, QUERIES, ENC_LAYERS, DEC_LAYERS, LABELS = 64, 128, 30, 2, 3, 91
# (refine, two_stage) of each of our VARIANTS
HF_VARIANTS = dict(zip(VARIANTS, [(False, False), (True, False),
                                  (True, True)]))
IMAGES = [('BloodImage_00007', (320, 240)), ('BloodImage_00011', (256, 200))]


def hf_model(with_box_refine: bool, two_stage: bool):
    config = DeformableDetrConfig(
        use_timm_backbone=False, use_pretrained_backbone=False,
        backbone_config=ResNetConfig(
            out_features=['stage2', 'stage3', 'stage4']),
        d_model=D_MODEL, encoder_ffn_dim=FFN, decoder_ffn_dim=FFN,
        encoder_layers=ENC_LAYERS, decoder_layers=DEC_LAYERS,
        num_queries=QUERIES, two_stage_num_proposals=QUERIES,
        with_box_refine=with_box_refine, two_stage=two_stage,
        num_labels=LABELS)
    torch.manual_seed(0)
    model = DeformableDetrForObjectDetection(config).eval()
    perturb_(model)
    gen = torch.Generator().manual_seed(1)
    for name, buffer in model.named_buffers():
        if name.endswith('running_mean'):
            buffer.copy_(torch.randn(buffer.shape, generator=gen) * 0.1)
        elif name.endswith('running_var'):
            buffer.copy_(torch.rand(buffer.shape, generator=gen) + 0.5)
    return model


def our_model(name: str):
    """Our config of the variant with HF's sizes, ``neck.bias=True`` and
    ``num_classes = num_labels``."""
    cfg = load_our_config(name, small=False)
    model = cfg.model
    model.neck.update(out_channels=D_MODEL, bias=True)
    model.bbox_head.update(num_classes=LABELS, embed_dims=D_MODEL)
    transformer = model.transformer
    transformer.num_queries = QUERIES
    transformer.positional_encoding.num_feats = D_MODEL // 2
    transformer.encoder.num_layers = ENC_LAYERS
    transformer.decoder.num_layers = DEC_LAYERS
    for layer in (transformer.encoder.layer_cfg,
                  transformer.decoder.layer_cfg):
        for key in ('self_attn_cfg', 'cross_attn_cfg'):
            if key in layer:
                layer[key].embed_dims = D_MODEL
        layer.ffn_cfg.update(embed_dims=D_MODEL, feedforward_channels=FFN)
    return build_our_model(cfg).eval()


@pytest.fixture(scope='module')
def batch():
    """Two BCCD images resized to two sizes, preprocessed by our model's
    ``DetDataPreprocessor`` (BGR->RGB, ImageNet mean/std, bottom-right zero
    padding): ``(inputs, data_samples, pixel_mask)``."""
    folder = shared_data_dir('bccd', 'BCCD', 'JPEGImages')
    inputs, samples = [], []
    for name, size in IMAGES:
        image = mmcv.imresize(mmcv.imread(str(folder / f'{name}.jpg')), size)
        inputs.append(torch.from_numpy(image).permute(2, 0, 1).contiguous())
        samples.append(DetDataSample(metainfo=dict(
            img_shape=image.shape[:2], ori_shape=image.shape[:2],
            scale_factor=(1.0, 1.0))))
    preprocessor = our_model(VARIANTS[0]).data_preprocessor
    data = preprocessor(dict(inputs=inputs, data_samples=samples), False)
    pixel_mask = torch.zeros(data['inputs'].shape[0],
                             *data['inputs'].shape[2:], dtype=torch.long)
    for mask, sample in zip(pixel_mask, data['data_samples']):
        mask[:sample.img_shape[0], :sample.img_shape[1]] = 1
    return data['inputs'], data['data_samples'], pixel_mask


def hf_every_layer(model, pixel_values, pixel_mask):
    """HF's logits and boxes of every decoder layer, by HF's head exactly as
    ``DeformableDetrForObjectDetection.forward`` applies it to each layer
    (which returns the last one only), and that forward's own output."""
    outputs = model(pixel_values=pixel_values, pixel_mask=pixel_mask)
    inner = model.model(pixel_values=pixel_values, pixel_mask=pixel_mask)
    hidden = inner.intermediate_hidden_states
    logits, boxes = [], []
    for level in range(hidden.shape[1]):
        reference = inner.init_reference_points if level == 0 else \
            inner.intermediate_reference_points[:, level - 1]
        reference = torch.special.logit(reference.clamp(0, 1), eps=1e-5)
        delta = model.bbox_embed[level](hidden[:, level])
        if reference.shape[-1] == 4:
            delta = delta + reference
        else:
            delta = torch.cat([delta[..., :2] + reference, delta[..., 2:]],
                              -1)
        logits.append(model.class_embed[level](hidden[:, level]))
        boxes.append(delta.sigmoid())
    return outputs, torch.stack(logits), torch.stack(boxes)


def _converted_from_folder(hf, folder, **save_args):
    """``hf`` saved by the pinned transformers' ``save_pretrained`` (which
    stores tied weights once), then converted from that folder."""
    hf.save_pretrained(folder, **save_args)
    return convert_hf_checkpoint(str(folder))['state_dict']


@pytest.mark.parametrize('name', VARIANTS)
def test_every_layer_and_detections_match_hf(batch, name, tmp_path):
    """Through a ``save_pretrained`` folder (transformers 5 ties the class
    heads of the refinement variant without two-stage: the file holds
    ``class_embed.0`` only)."""
    inputs, samples, pixel_mask = batch
    hf = hf_model(*HF_VARIANTS[name])
    ours = our_model(name)
    ours.load_state_dict(_converted_from_folder(hf, tmp_path), strict=True)
    with torch.no_grad():
        outputs, hf_logits, hf_boxes = hf_every_layer(hf, inputs, pixel_mask)
        our_logits, our_boxes = ours._forward(inputs, samples)
        results = ours.predict(inputs, samples, rescale=False)

    assert torch.equal(hf_logits[-1], outputs.logits)
    assert torch.equal(hf_boxes[-1], outputs.pred_boxes)
    assert our_logits.shape == (DEC_LAYERS, 2, QUERIES, LABELS)
    torch.testing.assert_close(our_logits, hf_logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(our_boxes, hf_boxes, atol=1e-4, rtol=0)

    sizes = [s.img_shape for s in samples]
    detections = DeformableDetrImageProcessorPil() \
        .post_process_object_detection(outputs, threshold=0.0,
                                       target_sizes=sizes, top_k=100)
    for hf_det, result, (height, width) in zip(detections, results, sizes):
        pred = result.pred_instances
        assert len(pred.scores) == len(hf_det['scores']) == 100
        torch.testing.assert_close(pred.scores, hf_det['scores'],
                                   atol=1e-4, rtol=0)
        assert torch.equal(pred.labels, hf_det['labels'])
        # HF does not clip to the image, our head (and mmdet's) does
        hf_boxes_clipped = hf_det['boxes'].clone()
        hf_boxes_clipped[:, 0::2] = hf_boxes_clipped[:, 0::2].clamp(0, width)
        hf_boxes_clipped[:, 1::2] = hf_boxes_clipped[:, 1::2].clamp(
            0, height)
        torch.testing.assert_close(pred.bboxes, hf_boxes_clipped,
                                   atol=1e-4 * max(height, width), rtol=0)


def test_every_file_form_converts_to_the_same_weights(tmp_path):
    """The refinement variant (class heads tied by transformers 5) as one
    safetensors file, as shards with an index, and as a
    ``pytorch_model.bin`` with one class head per layer (transformers 4's
    files, the released checkpoints): the same converted weights."""
    hf = hf_model(*HF_VARIANTS[VARIANTS[1]])
    assert hf.class_embed[0].weight is hf.class_embed[-1].weight
    single = _converted_from_folder(hf, tmp_path / 'single')
    sharded = _converted_from_folder(hf, tmp_path / 'sharded',
                                     max_shard_size='1MB')
    assert len(list((tmp_path / 'sharded').glob('*.safetensors'))) > 1
    bin_folder = tmp_path / 'bin'
    bin_folder.mkdir()
    torch.save(hf.state_dict(), bin_folder / 'pytorch_model.bin')
    (bin_folder / 'config.json').write_text(
        (tmp_path / 'single' / 'config.json').read_text())
    every_head = convert_hf_checkpoint(str(bin_folder))['state_dict']
    direct = hf_to_ddetr(hf.state_dict(), True)
    for converted in (sharded, every_head, direct):
        assert converted.keys() == single.keys()
        for key, value in single.items():
            assert torch.equal(converted[key], value), key
    for layer in range(DEC_LAYERS):
        assert torch.equal(single[f'bbox_head.cls_branches.{layer}.weight'],
                           hf.class_embed[0].weight.detach())
