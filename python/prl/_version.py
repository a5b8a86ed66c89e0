"""The client's version (the same as PRL's, common/version.h)."""
__version__ = "0.1.0"
