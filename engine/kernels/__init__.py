"""The step's kernels: the NumPy reference, the Numba step, the array (CuPy) step and the fused
CUDA kernel. Importing the package first drops Numba caches made from other sources."""

from engine.kernels.cache_guard import drop_stale_kernel_caches

drop_stale_kernel_caches()
