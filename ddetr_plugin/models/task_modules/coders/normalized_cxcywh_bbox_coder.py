"""Box parametrisation of DETR-style heads (Deformable DETR, Zhu et al.,
arXiv 2010.04159, Sec. 3 and Appendix A.3; DETR, Carion et al. 2020,
Sec. 3.1): centre, width and height normalised by the image size."""
from typing import Sequence

import torch
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from torch import Tensor

from ddetr_plugin.registry import TASK_UTILS


@TASK_UTILS.register_module()
class NormalizedCXCYWHBBoxCoder:
    """Convert between pixel ``(x1, y1, x2, y2)`` boxes and ``(cx, cy, w,
    h)`` boxes normalised by the image (``img_shape``, not the padded
    batch), the targets and outputs of the regression branches."""

    @staticmethod
    def _factor(bboxes: Tensor, img_shape: Sequence[int]) -> Tensor:
        if bboxes.shape[-1] != 4:
            raise ValueError('boxes must end in 4 coordinates, got shape '
                             f'{tuple(bboxes.shape)}')
        img_h, img_w = img_shape[:2]
        return bboxes.new_tensor([img_w, img_h, img_w, img_h])

    def encode(self, bboxes: Tensor, img_shape: Sequence[int]) -> Tensor:
        """Pixel boxes to normalised boxes.

        Args:
            bboxes (Tensor): (..., 4) float ``(x1, y1, x2, y2)`` in pixels.
            img_shape (Sequence[int]): ``(h, w)`` of the image in pixels.

        Returns:
            Tensor: (..., 4) ``(cx, cy, w, h)`` in units of the image size.

        Raises:
            ValueError: ``bboxes`` whose last dim is not 4.
        """
        return bbox_xyxy_to_cxcywh(bboxes / self._factor(bboxes, img_shape))

    def decode(self,
               pred: Tensor,
               img_shape: Sequence[int],
               clamp: bool = False) -> Tensor:
        """Normalised boxes to pixel boxes.

        Args:
            pred (Tensor): (..., 4) normalised ``(cx, cy, w, h)``.
            img_shape (Sequence[int]): ``(h, w)`` of the image in pixels.
            clamp (bool): clip the boxes to the image.

        Returns:
            Tensor: (..., 4) ``(x1, y1, x2, y2)`` in pixels.

        Raises:
            ValueError: ``pred`` whose last dim is not 4.
        """
        factor = self._factor(pred, img_shape)
        bboxes = bbox_cxcywh_to_xyxy(pred) * factor
        if clamp:
            bboxes = torch.minimum(bboxes.clamp(min=0), factor)
        return bboxes
