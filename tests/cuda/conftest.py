"""The CUDA tests' process setup: cuBLAS's deterministic workspace, set before any cuBLAS handle exists.

``Trainer(deterministic=True)`` turns on ``torch.use_deterministic_algorithms``, under which a CUDA matmul raises
unless ``CUBLAS_WORKSPACE_CONFIG`` is ``:4096:8`` or ``:16:8``. Lightning sets it when such a Trainer is built, but
PyTorch sizes the cuBLAS workspace from it once, at the process's first matmul, which the tests before the resume tests
have run by then. A conftest is imported before its folder's test modules, and nothing before it runs a CUDA matmul
(importing dnas only asks ``torch.cuda.is_available()``).
"""

import os

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
