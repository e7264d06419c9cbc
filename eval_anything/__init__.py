"""eval-anything: evaluate all-modality models (text, image, audio, video in and out)."""
__version__ = "0.1.0"
