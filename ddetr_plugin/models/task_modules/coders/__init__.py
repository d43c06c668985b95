from .normalized_cxcywh_bbox_coder import NormalizedCXCYWHBBoxCoder

__all__ = ['NormalizedCXCYWHBBoxCoder']
