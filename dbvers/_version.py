"""The package version, in a module of its own so that nothing imports it from the package that imports them."""

__version__ = "0.1.0"
