"""e2m-live: a live-performance emotion-to-music engine built on FIGARO."""

__version__ = "0.1.0"
