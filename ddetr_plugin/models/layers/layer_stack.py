"""The part the encoder and decoder stacks share: ``num_layers`` copies of
one layer class built from one config (Zhu et al., arXiv 2010.04159,
Sec. 4.1: 6 encoder and 6 decoder layers in the paper)."""
from mmengine.model import BaseModule, ModuleList


class DeformableDETRLayerStack(BaseModule):
    """``num_layers`` layers of ``layer_class``, each built from
    ``layer_cfg``. Subclasses set ``layer_class`` and write ``forward``
    (they differ in the reference points each layer gets).

    Args:
        num_layers (int): number of layers.
        layer_cfg (dict): kwargs of ``layer_class``.
        init_cfg (dict, optional): mmengine initialisation config.

    Attributes:
        layers (ModuleList): the layers, in order.
        embed_dims (int): channels C of the tokens, read from the first
            layer.
    """

    layer_class: type

    def __init__(self, num_layers: int, layer_cfg: dict,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_layers = num_layers
        self.layers = ModuleList(
            [self.layer_class(**layer_cfg) for _ in range(num_layers)])
        self.embed_dims = self.layers[0].embed_dims
