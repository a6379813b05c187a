"""Robot-side nodes of LeKiwi Fleet."""

__version__ = '0.1.0'
