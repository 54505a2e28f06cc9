"""sam3m4: distill SAM 3 into a mobile student, quantize, export and gate releases."""
__version__ = "0.1.0"
