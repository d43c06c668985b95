"""The multi-scale input of Deformable DETR (Zhu et al., arXiv 2010.04159,
Sec. 4.1 and Appendix A.2, Fig. 4): backbone stages C3-C5 projected to a
common width, plus extra lower-resolution levels."""
from typing import List, Sequence, Tuple

from mmcv.cnn import ConvModule
from mmengine.model import BaseModule, ModuleList
from torch import Tensor

from ddetr_plugin.registry import MODELS


@MODELS.register_module()
class DeformableDETRNeck(BaseModule):
    """Project backbone maps to ``out_channels`` and add extra levels.

    Each input level goes through a 1x1 convolution + GroupNorm
    (``input_projs``). Level ``len(in_channels)`` is a 3x3 stride-2
    convolution + GroupNorm of the last *input* map (C5), each further level
    the same on the previous output (``extra_projs``). No activation. With
    C3-C5 (strides 8, 16, 32) and ``num_outs=4`` this gives strides
    8, 16, 32, 64 as in the paper.

    Args:
        in_channels (list[int]): channels of the input maps, high to low
            resolution (e.g. ``[512, 1024, 2048]`` for ResNet-50 C3-C5).
        out_channels (int): channels of every output map. Default 256.
        num_outs (int): output levels, ``>= len(in_channels)``. Default 4.
        num_groups (int): GroupNorm groups. Default 32.
        bias (bool): give the convolutions a bias. mmdet's Deformable DETR
            config and checkpoints have none (``ConvModule`` drops the bias
            before a norm); the paper's reference code has one.
        init_cfg (dict, optional): mmengine initialisation config; Xavier
            uniform on the convolutions by default, as mmdet's
            ``ChannelMapper``.

    Raises:
        ValueError: ``num_outs < len(in_channels)``.
    """

    def __init__(self,
                 in_channels: List[int],
                 out_channels: int = 256,
                 num_outs: int = 4,
                 num_groups: int = 32,
                 bias: bool = False,
                 init_cfg=dict(
                     type='Xavier', layer='Conv2d',
                     distribution='uniform')) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_outs < len(in_channels):
            raise ValueError(f'num_outs={num_outs} < {len(in_channels)} '
                             'input levels')
        norm_cfg = dict(type='GN', num_groups=num_groups)
        self.input_projs = ModuleList([
            ConvModule(
                channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None,
                bias=bias) for channels in in_channels
        ])
        self.extra_projs = ModuleList([
            ConvModule(
                in_channels[-1] if i == 0 else out_channels,
                out_channels,
                3,
                stride=2,
                padding=1,
                norm_cfg=norm_cfg,
                act_cfg=None,
                bias=bias) for i in range(num_outs - len(in_channels))
        ])

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Build the multi-scale maps.

        Args:
            inputs (Sequence[Tensor]): ``len(in_channels)`` maps
                (B, in_channels[i], H_i, W_i).

        Returns:
            tuple[Tensor]: ``num_outs`` maps (B, out_channels, H_l, W_l);
            each extra level has ``ceil(H / 2) x ceil(W / 2)`` of the one
            before.

        Raises:
            ValueError: a number of inputs other than ``len(in_channels)``.
        """
        if len(inputs) != len(self.input_projs):
            raise ValueError(f'expected {len(self.input_projs)} input maps, '
                             f'got {len(inputs)}')
        outs = [proj(x) for proj, x in zip(self.input_projs, inputs)]
        x = inputs[-1]
        for proj in self.extra_projs:
            x = proj(x)
            outs.append(x)
        return tuple(outs)
