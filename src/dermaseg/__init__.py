"""dermaseg: segment vitiligo, scars and thinning hair; plan micropigmentation treatments."""

__version__ = "0.1.0"
