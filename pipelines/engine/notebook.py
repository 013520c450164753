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
    """An AsyncKernelManager whose kernel spec is ipykernel's, bound to sys.executable, with its
    connection file and IPC sockets in a private folder of its own (removed with the kernel's
    resources) and a kernel that dies with this process (pipelines/engine/kernels.py)."""
    from pipelines.engine.kernels import kernel_files, manager_class, new_private_dir, remove_private_dir

    class NativeKernelManager(manager_class(asynchronous=True)):
        def __init__(self, *args, **kwargs):
            # IPC sockets instead of TCP ports: no port clashes, and no "Kernel is running over
            # TCP without encryption" warning on the user's terminal.
            self._private = new_private_dir()
            for key, value in kernel_files(self._private, "kernel").items():
                kwargs.setdefault(key, value)
            super().__init__(*args, **kwargs)

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            if not restart:
                remove_private_dir(self._private)

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

    from pipelines.domain.config import SETTINGS_ENV, exported_environ
    from pipelines.engine.kernels import patience, temporary_env

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
    with temporary_env(SETTINGS_ENV, exported_environ()[SETTINGS_ENV]):  # the kernel sees this run's settings
        pm.execute_notebook(
            str(src),
            str(dst),
            parameters=dict(parameters),
            kernel_name=kernel_name,
            cwd=str(cwd) if cwd is not None else None,
            progress_bar=False,
            **patience(),
            **kwargs,
        )
    return dst
