"""Warm-kernel papermill execution (pipelines/executor.py) on real kernels."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from pipelines.executor import Task, run_tasks


def _notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("name = 'default'\nvalue = 0")
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "import os\n"
        "leaked = 'marker' in globals()\n"
        "marker = name\n"
        "if name == 'bad':\n"
        "    raise ValueError('boom in ' + name)\n"
        "print(f'{name}:{value * 2}:leaked={leaked}:cwd={os.path.basename(os.getcwd())}')"
    )
    nb.cells = [params, body]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def _stdout(path: Path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


class TestRunTasks:
    def test_namespace_reset_parameters_injected_and_failures_collected(self, tmp_path: Path) -> None:
        src = _notebook(tmp_path / "nb.ipynb")
        (tmp_path / "wd").mkdir()
        names = ["a", "b", "bad", "c", "d"]
        tasks = [Task(n, src, tmp_path / "out" / f"{n}.ipynb", {"name": n, "value": i}, cwd=tmp_path / "wd")
                 for i, n in enumerate(names)]
        outcomes = run_tasks(tasks, jobs=2)
        assert [o.key for o in outcomes] == names
        assert [o.ok for o in outcomes] == [True, True, False, True, True]
        assert "ValueError: boom in bad" in outcomes[2].error
        for i, n in enumerate(names):
            if n == "bad":
                continue
            # Parameters injected by papermill; nothing left over from the previous area; cwd set.
            assert _stdout(tmp_path / "out" / f"{n}.ipynb").strip() == f"{n}:{i * 2}:leaked=False:cwd=wd"
            nb = nbformat.read(str(tmp_path / "out" / f"{n}.ipynb"), as_version=4)
            tags = [c.metadata.get("tags", []) for c in nb.cells]
            assert ["injected-parameters"] in tags          # a papermill record
            assert not any("tsunagari-reset" in t for t in tags)  # the reset cell is not in the record
            assert "papermill" in nb.metadata

    @pytest.mark.parametrize("jobs", [1, 2])
    def test_same_outputs_for_any_number_of_jobs(self, tmp_path: Path, jobs: int) -> None:
        src = _notebook(tmp_path / "nb.ipynb")
        tasks = [Task(n, src, tmp_path / f"{n}.ipynb", {"name": n, "value": 3}) for n in ("x", "y", "z")]
        assert all(o.ok for o in run_tasks(tasks, jobs=jobs))
        assert [_stdout(tmp_path / f"{n}.ipynb").split(":")[:3] for n in ("x", "y", "z")] == \
            [[n, "6", "leaked=False"] for n in ("x", "y", "z")]


class TestWarmPoolClose:
    def test_close_in_the_background_then_waiting_leaves_no_worker(self) -> None:
        """close(wait=False) (the build lets kernels stop while it writes the site) followed by
        close() must wait for every worker: shutting the executor down twice used to return at once
        and left workers waiting for their stop signal, hanging the process at exit."""
        from pipelines.executor import WarmPool

        pool = WarmPool(2)
        for f in pool._warming:
            f.result()
        procs = list(pool.pool._processes.values())
        pool.close(wait=False)
        pool.close()
        assert len(procs) == 2
        assert not any(p.is_alive() for p in procs)

    def test_workers_stop_their_kernels_then_leave_without_interpreter_teardown(self, tmp_path: Path) -> None:
        """A worker stops its kernel (and removes its socket files) as it exits, then leaves with
        os._exit: the interpreter's teardown (0.15 s with pandas and jupyter loaded, waited for at
        the end of every build) is skipped, so an atexit handler of the worker does not run."""
        import atexit
        import os

        import psutil

        from pipelines.executor import WarmPool, _ipc_dir

        pool = WarmPool(1)
        pid = pool._warming[0].result()
        kernels = psutil.Process(pid).children(recursive=True)
        assert kernels, "the worker has a kernel"
        marker = tmp_path / "teardown-ran"
        pool.pool.submit(atexit.register, os.mkdir, str(marker)).result()
        (proc,) = pool.pool._processes.values()
        pool.close()
        assert proc.exitcode == 0
        assert not any(k.is_running() and k.status() != psutil.STATUS_ZOMBIE for k in kernels)
        assert not list(_ipc_dir().glob(f"kernel-{pid}-*"))
        assert not marker.exists()
