"""Data for mmgpt (installed as ``mmgpt.datasets``): the Sample schema, readers of standard
formats, the ShapesTones generated world, safe media decoding, and collation with packing."""

from mmgpt.datasets.schema import Sample, Segment, Turn

__all__ = ["Sample", "Segment", "Turn"]
