from .decoder import (DeformableDETRDecoderLayer,
                      DeformableDETRTransformerDecoder, refine_boxes)
from .encoder import (DeformableDETREncoderLayer,
                      DeformableDETRTransformerEncoder)
from .msda_attention import MultiScaleDeformableAttention
from .positional_encoding import SinePositionalEncoding, sine_embedding
from .transformer import DeformableDETRTransformer

__all__ = [
    'MultiScaleDeformableAttention', 'SinePositionalEncoding',
    'sine_embedding', 'DeformableDETREncoderLayer',
    'DeformableDETRTransformerEncoder', 'DeformableDETRDecoderLayer',
    'DeformableDETRTransformerDecoder', 'refine_boxes',
    'DeformableDETRTransformer'
]
