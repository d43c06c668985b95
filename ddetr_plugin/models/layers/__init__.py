from .counter_dropout import (CounterDropout,
                              CounterDropoutMultiheadAttention,
                              ReLUCounterDropout, use_counter_dropout)
from .decoder import (DeformableDETRTransformerDecoder,
                      DeformableDETRTransformerDecoderLayer, refine_boxes)
from .denoising import CdnQueryGenerator, denoising_self_attn_mask
from .dino_decoder import DINOTransformerDecoder
from .dino_transformer import DINOTransformer
from .encoder import (DeformableDETRTransformerEncoder,
                      DeformableDETRTransformerEncoderLayer)
from .hybrid_matching import hybrid_self_attn_mask, repeat_ground_truth
from .layer_stack import DeformableDETRLayerStack
from .msda_attention import MultiScaleDeformableAttention
from .positional_encoding import SinePositionalEncoding, sine_embedding
from .transformer import DeformableDETRTransformer

__all__ = [
    'CounterDropout', 'CounterDropoutMultiheadAttention',
    'ReLUCounterDropout', 'use_counter_dropout',
    'MultiScaleDeformableAttention',
    'SinePositionalEncoding', 'sine_embedding', 'DeformableDETRLayerStack',
    'DeformableDETRTransformerEncoderLayer',
    'DeformableDETRTransformerEncoder',
    'DeformableDETRTransformerDecoderLayer',
    'DeformableDETRTransformerDecoder', 'refine_boxes',
    'DeformableDETRTransformer', 'hybrid_self_attn_mask',
    'repeat_ground_truth', 'CdnQueryGenerator', 'denoising_self_attn_mask',
    'DINOTransformerDecoder', 'DINOTransformer'
]
