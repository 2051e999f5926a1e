"""The step's kernels: the NumPy reference, the Numba step, the array (CuPy) step and the fused
CUDA kernel. Importing the package first drops Numba caches made from other sources and makes
Numba stamp the kernels' cache entries with the digest of every kernel source; a kernel missing
from the cache is compiled by one process at a time (``compile_once``)."""

from engine.kernels import compile_once
from engine.kernels.cache_guard import drop_stale_kernel_caches, install_locators

drop_stale_kernel_caches()
install_locators()
compile_once.install()
