"""GPU job scheduler daemon of the gpunas platform."""

__version__ = "0.1.0"
