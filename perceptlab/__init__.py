"""perceptlab: hear and measure perceptual similarity of audio."""

__version__ = "0.1.0"
