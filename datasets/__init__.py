"""dermaseg.datasets: label taxonomy, dataset readers, checks, safe image loading, synthetic photos.

Depends on numpy, OpenCV and Pillow only (never torch).
"""
