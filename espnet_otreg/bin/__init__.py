"""Command-line entry points: ``python -m espnet_otreg.bin.<name>``."""
