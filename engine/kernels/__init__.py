"""The step's kernels: the NumPy reference, the Numba step, the array (CuPy) step and the fused
CUDA kernel. Importing the package first drops Numba caches made from other sources and makes
Numba stamp the kernels' cache entries with the digest of every kernel source."""

from engine.kernels.cache_guard import drop_stale_kernel_caches, install_locators

drop_stale_kernel_caches()
install_locators()
