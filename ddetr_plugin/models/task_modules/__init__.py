from .assigners import HungarianAssigner
from .coders import NormalizedCXCYWHBBoxCoder

__all__ = ['HungarianAssigner', 'NormalizedCXCYWHBBoxCoder']
