"""Reading container images: docker-save archives, OCI archives and OCI layout folders.

Every blob is checked against its digest and size while it streams; layers are walked
entry by entry without extracting, and extraction never writes outside its target.
"""

from pysbx.images.errors import ImageError
from pysbx.images.image import Image, Layer, open_image
from pysbx.images.platform import Platform

__all__ = ["Image", "ImageError", "Layer", "Platform", "open_image"]
