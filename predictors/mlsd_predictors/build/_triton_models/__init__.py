"""Triton Python-backend `model.py` files that `mlsd build` copies into model repositories.

They run inside tritonserver (they import `triton_python_backend_utils`), never in this package.
"""
