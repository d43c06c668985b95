"""DINO: Deformable DETR with contrastive denoising, mixed query selection and
look-forward-twice box refinement (Zhang et al., "DINO: DETR with Improved
DeNoising Anchor Boxes for End-to-End Object Detection", ICLR 2023, arXiv
2203.03605), on this package's components (MSDA op, neck, encoder, coder,
assigner); as mmdet 3.3's ``DINO``, whose converted weights give the same
detections."""
from ddetr_plugin.registry import MODELS
from .dn_deformable_detr import DNDeformableDETR


@MODELS.register_module()
class DINO(DNDeformableDETR):
    """DINO: a :class:`DNDeformableDETR` (contrastive denoising queries in
    training) with box refinement, a ``DINOTransformer`` (mixed query
    selection, ``DINOTransformerDecoder``) and a ``DINOHead``.

    At inference the denoising queries are not built, and the model is its
    matching queries only (``predict``, ``tools/test.py``, ONNX export as
    any Deformable DETR here).

    Args:
        *args: see :class:`DNDeformableDETR` (``dn_cfg``).
        with_box_refine (bool): must be True (DINO refines).
        as_two_stage (bool): must be True (DINO selects queries from the
            encoder proposals).
        **kwargs: see :class:`DNDeformableDETR`.

    Raises:
        ValueError: ``with_box_refine`` or ``as_two_stage`` False; those of
            :class:`DNDeformableDETR`.
    """

    def __init__(self,
                 *args,
                 with_box_refine: bool = True,
                 as_two_stage: bool = True,
                 **kwargs) -> None:
        if not (with_box_refine and as_two_stage):
            raise ValueError('DINO needs with_box_refine=True and '
                             'as_two_stage=True (its decoder refines boxes '
                             'selected from the encoder proposals), got '
                             f'with_box_refine={with_box_refine}, '
                             f'as_two_stage={as_two_stage}')
        super().__init__(
            *args, with_box_refine=True, as_two_stage=True, **kwargs)
