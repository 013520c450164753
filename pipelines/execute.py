"""Papermill execution of the parameterised notebooks (indicators, reports).

The default kernel ``python3`` always means *this* interpreter: the kernel is started as
``sys.executable -m ipykernel_launcher`` from ipykernel's own kernel spec, so the notebook imports
the same installed ``pipelines`` package as the caller. This works in a fresh virtual environment
after ``pip install -e .`` with no ``ipykernel install`` step, and it is not fooled by a user-level
``python3`` kernel spec that points to another Python. Any other ``kernel_name`` is looked up in the
installed Jupyter kernel specs as usual.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("tsunagari.execute")

NATIVE_KERNEL = "python3"


def _native_kernel_manager_class():
    """An AsyncKernelManager whose kernel spec is ipykernel's, bound to sys.executable."""
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class NativeKernelManager(AsyncKernelManager):
        def __init__(self, *args, **kwargs):
            # IPC sockets in a temporary folder instead of TCP ports: no port clashes, and no
            # "Kernel is running over TCP without encryption" warning on the user's terminal.
            import tempfile
            import uuid

            folder = Path(tempfile.gettempdir()) / "tsunagari-kernels"
            folder.mkdir(parents=True, exist_ok=True)
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("ip", str(folder / f"kernel-{os.getpid()}-{uuid.uuid4().hex[:8]}"))
            super().__init__(*args, **kwargs)

        @property
        def kernel_spec(self):  # type: ignore[override]
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())
            return self._kernel_spec

    return NativeKernelManager


def execute_notebook(
    src: Path,
    dst: Path,
    parameters: dict,
    cwd: Path | None = None,
    kernel_name: str = NATIVE_KERNEL,
    timeout: int | None = None,
) -> Path:
    """Execute ``src`` with papermill into ``dst`` (the executed notebook is the audit record).

    ``parameters`` are injected after the cell tagged ``parameters``. Raises
    ``papermill.PapermillExecutionError`` when a cell fails; ``dst`` then still holds the notebook
    executed up to the failing cell. Returns ``dst``.
    """
    import papermill as pm

    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict = {}
    if kernel_name == NATIVE_KERNEL:
        kwargs["kernel_manager_class"] = _native_kernel_manager_class()
    if timeout is not None:
        kwargs["execution_timeout"] = timeout
    log.info("papermill %s -> %s %s", src.name, dst, parameters)
    # Keep the kernel's matplotlib headless and its start-up quiet.
    os.environ.setdefault("MPLBACKEND", "Agg")
    pm.execute_notebook(
        str(src),
        str(dst),
        parameters=dict(parameters),
        kernel_name=kernel_name,
        cwd=str(cwd) if cwd is not None else None,
        progress_bar=False,
        **kwargs,
    )
    return dst
