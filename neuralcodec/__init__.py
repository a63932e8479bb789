"""neuralcodec: learned compression for images, video and 3D.

Data flows one way: file -> datasets reader -> array -> Codec.encode -> named streams ->
container (.ncf) -> bytes on disk; and back. See docs/architecture.md.
"""

__version__ = "0.1.0"
