"""The output folder: what the build owns, atomic publishing, and the state that makes rebuilds
incremental.

What the build owns (and nothing else). For ``--out X`` (a symlink is followed: the build publishes
into its target, so ``current -> www/html`` updates ``www/html`` and the link stays):
- ``X`` itself, once it holds the marker file ``.tsunagari-site`` (written into every site the
  build creates; a site of an earlier version is recognised by its ``.tsunagari-state.json``);
- four siblings with a private prefix: ``.X.tsunagari-new`` (the site being assembled),
  ``.X.tsunagari-old`` (the previous site during the swap), ``.X.tsunagari-work`` (the build's
  working files, never published) and ``.X.tsunagari-lock`` (one build per output at a time). The
  three folders carry the marker too; a folder under these names without it is never deleted or
  written (the build stops and names it).
A user's ``X.new``, ``X.old`` or ``X.lock`` is never touched.

Only the site is published. The marker is the one file of the build's own in the site (it is how
the build recognises its folder; it holds the site's id, below). Everything else the build keeps
lives in the working folder ``.X.tsunagari-work``: the executed report notebooks
(``executed/``), the indicators notebook (``runs/indicators-{year}.ipynb``, the audit record),
``build.log``, ``build-summary.txt``, the state (``state.json``), the disclosure record
(``checked.json``) and the workbooks' input digests. ``scan_site`` is an allow-list: a file of any
other kind in the new site (a notebook, a log, a state file, a dot file other than the marker, data
under any name) stops the build, naming it, and nothing is published.

``check_out`` refuses (exit 2, naming ``--out``) an output that is or contains the warehouse, the
input folder, the working folder, the project or ``data/``, that is a file, or that is a non-empty
folder the build did not create (unless ``--force-out``: its files are then taken into the new site
and checked like everything published).

The new site is assembled in ``.X.tsunagari-new`` (a copy of the published one, so unchanged reports
carry over; the free space is checked first) and swapped in with two renames only when every stage
succeeded and ``scan_site`` found nothing but what the allow-list names. A failed or killed build
leaves the published site untouched. The state lists only artefacts known to be complete, and
describes one site folder: the marker of every site folder holds an id, and the state names the id
of the folder it describes. The staging copy keeps the published site's id until the build first
changes it (``BuildState`` then gives it an id of its own), so a rebuild with no change publishes a
byte-identical site; once published (renamed) the folder keeps its id. A state whose id is not that
of the staging folder is not used (everything is built again), so the state outside the site never
vouches for files it did not see written.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipelines.domain.errors import TsunagariError, UsageError

log = logging.getLogger("tsunagari.publish")

MARKER = ".tsunagari-site"
MARKER_TEXT = "This folder was created by Tsunagari (tsunagari build); the build replaces it.\n"
SITE_ID_PREFIX = "site-id: "  # the marker's second line: the id the build state refers to
# A site written by an earlier version kept its state inside (recognised as the build's own).
LEGACY_STATE_FILE = ".tsunagari-state.json"
PREFIX = "."
SUFFIX_NEW, SUFFIX_OLD, SUFFIX_LOCK = ".tsunagari-new", ".tsunagari-old", ".tsunagari-lock"
SUFFIX_WORK = ".tsunagari-work"
# The working folder's files (never published).
STATE_FILE = "state.json"  # artefact key -> input hash, and the id of the site it describes
CHECKED_FILE = "checked.json"  # the files checked for disclosure (path -> sha256)
LOG_FILE, SUMMARY_FILE = "build.log", "build-summary.txt"
EXECUTED_DIR, RUNS_DIR = "executed", "runs"  # report notebooks; the indicators notebook (audit record)
WORKBOOK_DIGESTS = "xlsx-inputs.json"  # the per-prefecture workbooks' input digests
# Working files that earlier versions kept inside the site: never copied into a new site.
LEGACY_IN_SITE = (
    ".work",
    "runs/indicators-*.ipynb",
    "build.log",
    "build-summary.txt",
    LEGACY_STATE_FILE,
    ".tsunagari-state.tmp",
    ".tsunagari-checked.json",
    ".tsunagari-checked.tmp",
    "downloads/.xlsx-inputs.json",
)
OPTION = "--out"
# Room kept free beyond the copy of the published site (the new reports, logs, a margin).
SPACE_MARGIN = 64 * 1024 * 1024


class BuildLockedError(TsunagariError):
    exit_code = 1


class PublishError(TsunagariError):
    """The site could not be assembled or swapped in (disk full, permissions). The published site
    is unchanged."""

    exit_code = 1


# ---------------------------------------------------------------------------------------------
# Names and ownership
# ---------------------------------------------------------------------------------------------


def resolve_out(out: str | os.PathLike[str]) -> Path:
    """The folder the build writes: --out made absolute with every symlink followed (a symlinked
    --out publishes into its target)."""
    p = Path(out).expanduser()
    resolved = p.resolve()
    if p.is_symlink():
        log.info("--out %s is a symbolic link: publishing into its target %s", p, resolved)
    return resolved


def _sibling(out: Path, suffix: str) -> Path:
    out = Path(out)
    return out.with_name(PREFIX + out.name + suffix)


def staging_dir(out: Path) -> Path:
    return _sibling(out, SUFFIX_NEW)


def old_dir(out: Path) -> Path:
    return _sibling(out, SUFFIX_OLD)


def lock_file(out: Path) -> Path:
    return _sibling(out, SUFFIX_LOCK)


def work_dir(out: Path) -> Path:
    """The build's private working folder beside the site (never published)."""
    return _sibling(out, SUFFIX_WORK)


def owned(folder: Path) -> bool:
    """Whether `folder` is a site folder the build created (its marker, or the state file of a
    site written by an earlier version)."""
    folder = Path(folder)
    return (
        folder.is_dir()
        and not folder.is_symlink()
        and ((folder / MARKER).is_file() or (folder / LEGACY_STATE_FILE).is_file())
    )


def _marked(folder: Path) -> bool:
    folder = Path(folder)
    return folder.is_dir() and not folder.is_symlink() and (folder / MARKER).is_file()


def site_id(folder: Path) -> str | None:
    """The id in a site folder's marker (None: no marker, or one written by an earlier version)."""
    try:
        text = (Path(folder) / MARKER).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        if line.startswith(SITE_ID_PREFIX) and len(line) > len(SITE_ID_PREFIX):
            return line[len(SITE_ID_PREFIX) :].strip()
    return None


def _mark(folder: Path, new_id: bool = False) -> str:
    """Write the marker into `folder`, keeping the id it has (a new one when it has none, or with
    `new_id`). Returns the id."""
    ident = (None if new_id else site_id(folder)) or uuid.uuid4().hex
    (Path(folder) / MARKER).write_text(f"{MARKER_TEXT}{SITE_ID_PREFIX}{ident}\n", encoding="utf-8")
    return ident


def _contains(outer: Path, inner: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_out_location(
    out: Path, *, warehouse: Path, input_dir: Path | None = None, project: Path | None = None
) -> Path:
    """Guard for --out of every command that writes there: not the warehouse, the input folder,
    the working folder, the project or data/, nor a parent of them; not inside the input folder;
    not a file. Returns the resolved folder; raises UsageError naming --out."""
    from pipelines.domain import config

    target = resolve_out(out)
    shown = f"'{out}'" + (f" (-> {target})" if Path(out).is_symlink() else "")
    cwd = Path.cwd().resolve()
    checks = [
        (cwd, "the working folder", "作業フォルダ"),
        (cwd / "data", "data/", "data フォルダ"),
        (Path(warehouse).resolve(), "the warehouse", "倉庫ファイル"),
        (Path(str(Path(warehouse).resolve()) + ".wal"), "the warehouse's log", "倉庫ファイル"),
        (config.REPO_ROOT.resolve(), "the Tsunagari project", "プロジェクト"),
        (config.REPO_ROOT.resolve() / "data", "data/", "data フォルダ"),
    ]
    if input_dir is not None:
        checks.append((Path(input_dir).resolve(), "the input folder", "入力フォルダ"))
    if project is not None:
        checks.append((Path(project).resolve(), "the project", "プロジェクト"))
    for path, what, ja in checks:
        if _contains(target, path):
            rel = "is" if target == path else "contains"
            raise UsageError(
                OPTION,
                f"{shown} {rel} {what} ({path}); the build replaces --out as a whole, "
                f"so choose a folder of its own, e.g. _site / 出力先が{ja}を含んでいます",
            )
    if input_dir is not None and _contains(Path(input_dir).resolve(), target):
        raise UsageError(
            OPTION,
            f"{shown} is inside the input folder ({Path(input_dir).resolve()}); the site "
            f"would be read as input / 出力先が入力フォルダの中にあります",
        )
    if target.exists() and not target.is_dir():
        raise UsageError(OPTION, f"{shown} is a file, not a folder / ファイルです（フォルダを指定してください）")
    return target


def check_out(
    out: Path, *, warehouse: Path, input_dir: Path | None = None, project: Path | None = None, force_out: bool = False
) -> Path:
    """Guard for the build's --out (see module doc): check_out_location, and a folder the build
    created or may take over, with no stranger under its private sibling names. Returns the
    resolved folder; raises UsageError naming --out."""
    target = check_out_location(out, warehouse=warehouse, input_dir=input_dir, project=project)
    shown = f"'{out}'" + (f" (-> {target})" if Path(out).is_symlink() else "")
    if target.is_dir() and not owned(target) and any(target.iterdir()) and not force_out:
        raise UsageError(
            OPTION,
            f"{shown} is a folder that Tsunagari did not create and is not empty "
            f"(no {MARKER} file); the build would replace it. Choose a new folder, or "
            f"pass --force-out to take it over / Tsunagari が作成していない空でないフォルダです",
        )
    for sib in (staging_dir(target), old_dir(target), work_dir(target)):
        _check_sibling(sib)
    lock = lock_file(target)
    if lock.is_symlink() or (lock.exists() and not lock.is_file()):
        raise UsageError(
            OPTION,
            f"'{lock}' exists and is not a lock file of Tsunagari; move it away / "
            f"{lock.name} は Tsunagari のロックファイルではありません",
        )
    if lock.is_file() and lock.stat().st_size > 32:
        raise UsageError(
            OPTION,
            f"'{lock}' exists and is not a lock file of Tsunagari; move it away / "
            f"{lock.name} は Tsunagari のロックファイルではありません",
        )
    return target


def _check_sibling(sib: Path) -> None:
    if (sib.exists() or sib.is_symlink()) and not _marked(sib):
        raise UsageError(
            OPTION,
            f"'{sib}' exists but was not created by Tsunagari (no {MARKER}); move it "
            f"away / Tsunagari が作成していない {sib.name} があります",
        )


# ---------------------------------------------------------------------------------------------
# Lock, staging, swap
# ---------------------------------------------------------------------------------------------


@contextmanager
def build_lock(out: Path) -> Iterator[Path]:
    """One build per output folder at a time: a second one is refused with a clear message."""
    lock_path = lock_file(out)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock_path, "a+")
    except OSError as exc:
        raise _os_error(exc, f"cannot create the lock file {lock_path}") from None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise BuildLockedError(
            f"another build is writing {out} (pid {holder}); wait for it to finish "
            f"/ 別のビルドが実行中です（{lock_path}）"
        ) from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield lock_path
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _rmtree_owned(folder: Path) -> None:
    """Remove a staging/old folder, only when it carries the marker (check_out refused others)."""
    if folder.is_dir() and not folder.is_symlink() and (folder / MARKER).is_file():
        shutil.rmtree(folder, ignore_errors=True)


def recover(out: Path) -> None:
    """Finish or undo a swap that a killed build left half done."""
    out, old = Path(out), old_dir(out)
    if not (old.is_dir() and (old / MARKER).is_file()):
        return
    if not out.exists():
        log.warning("restoring the previous site from %s (an earlier build was interrupted)", old.name)
        old.rename(out)
    else:
        _rmtree_owned(old)


def tree_size(folder: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(folder):
        for n in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except OSError:
                pass
    return total


def disk_full(where: Path, need: int | None = None, free: int | None = None) -> PublishError:
    mb = lambda n: f"{n / 1e6:,.0f} MB"  # noqa: E731
    detail = f": {mb(need)} needed, {mb(free)} free" if need is not None and free is not None else ""
    return PublishError(
        f"{OPTION}: disk full / 空き容量不足 on the disk of '{where}'{detail}; nothing was "
        f"published and the previous site is unchanged. Free some space and run the build again"
    )


def _os_error(exc: OSError, what: str, where: Path | None = None) -> PublishError:
    if exc.errno == errno.ENOSPC or "No space left on device" in str(exc):  # (shutil.Error lists them)
        return disk_full(where or Path(exc.filename or "."))
    reason = {
        errno.EACCES: "permission denied / アクセス権がありません",
        errno.EPERM: "operation not permitted / 権限がありません",
        errno.EROFS: "read-only file system / 読み取り専用です",
    }.get(exc.errno, exc.strerror or str(exc))
    return PublishError(f"{OPTION}: {what}: {reason}; the previous site is unchanged")


def ensure_work(out: Path) -> Path:
    """The build's working folder beside `out` (``.<out>.tsunagari-work``), created with the marker;
    reused as it is when it carries the marker. A folder or file under that name without the
    marker is refused (UsageError naming --out) and left alone."""
    work = work_dir(Path(out))
    _check_sibling(work)
    try:
        work.mkdir(parents=True, exist_ok=True)
        if not (work / MARKER).is_file():
            _mark(work)
    except OSError as exc:
        raise _os_error(exc, f"cannot create {work.name}", work.parent) from None
    return work


def state_site(work: Path) -> str | None:
    """The id of the site folder the state in `work` describes (None: no state)."""
    try:
        data = json.loads((Path(work) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("site") if isinstance(data, dict) and isinstance(data.get("site"), str) else None


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def _drop_records(work: Path) -> None:
    """Forget what the working folder's records say (they describe no site folder there is)."""
    for name in (STATE_FILE, CHECKED_FILE, WORKBOOK_DIGESTS):
        for p in (work / name, (work / name).with_suffix(".tmp")):
            p.unlink(missing_ok=True)


def _legacy_ignore(root: Path):
    """copytree's `ignore`: the working files that earlier versions kept inside the site."""
    root = Path(root)

    def ignore(folder: str, names: list[str]) -> set[str]:
        rel = Path(folder).relative_to(root)
        return {
            n
            for n in names
            if any((rel / n).match(pat) and len((rel / n).parts) == len(Path(pat).parts) for pat in LEGACY_IN_SITE)
        }

    return ignore


def prepare_staging(out: Path) -> Path:
    """The folder the new site is built in: the staging folder an earlier build left, when the
    state describes it (same id; the state lists only complete artefacts), or a fresh copy of the
    published site, without the working files earlier versions kept in it (free space checked
    first; on a full disk the partial copy is removed). The copy keeps the site's id (it is the
    same site until the build changes it); a state of another id is dropped (all is built again)."""
    out, new = Path(out), staging_dir(out)
    work = ensure_work(out)
    described = state_site(work)
    if described is not None and _marked(new) and site_id(new) == described:
        log.info("continuing from %s left by an earlier build", new.name)
        return new
    _rmtree_owned(new)
    try:
        if out.exists():
            need = tree_size(out) + SPACE_MARGIN
            free = shutil.disk_usage(out.parent).free
            if free < need:
                raise disk_full(out.parent, need, free)
            shutil.copytree(out, new, symlinks=True, ignore=_legacy_ignore(out))
            runs = new / "runs"  # (an earlier version's audit records were all it held)
            if runs.is_dir() and not runs.is_symlink() and not any(runs.iterdir()):
                runs.rmdir()
        else:
            new.mkdir(parents=True)
        ident = _mark(new)  # the published site's id (a new one for a folder without)
    except OSError as exc:
        if new.exists() and not (out.exists() and new.samefile(out)):
            shutil.rmtree(new, ignore_errors=True)  # ours: created just now
        raise _os_error(exc, f"cannot prepare {new.name}", out.parent) from None
    if described != ident:
        _drop_records(work)
    return new


def take_over(out: Path) -> None:
    """--force-out: the build takes over an existing folder it did not create (marks it as its own;
    its files are carried into the new site and checked like everything published)."""
    out = Path(out)
    if out.is_dir() and not owned(out):
        log.warning("--force-out: taking over %s (its files are kept in the new site)", out.name)
        _mark(out)


def discard_staging(out: Path) -> None:
    """Remove the staging folder and the working folder, each only when it carries the marker
    (after a full disk: they would only keep the disk full; the state describes no site then)."""
    _rmtree_owned(staging_dir(out))
    _rmtree_owned(work_dir(out))


def swap_in(out: Path) -> None:
    """Publish the staging folder as <out>: two renames, the old site removed afterwards. A rename
    refused by the system (permissions) undoes the first and raises PublishError."""
    out, new, old = Path(out), staging_dir(out), old_dir(out)
    _mark(new)
    _rmtree_owned(old)
    moved = False
    try:
        if out.exists():
            out.rename(old)
            moved = True
        new.rename(out)
    except OSError as exc:
        if moved and not out.exists():
            old.rename(out)
        raise _os_error(exc, f"cannot replace {out}") from None
    _rmtree_owned(old)
    if old.is_dir() and not old.is_symlink():  # the empty folder --out was before the first build
        try:
            old.rmdir()
        except OSError:
            log.warning("%s was not created by Tsunagari and is not empty: left in place", old.name)


# ---------------------------------------------------------------------------------------------
# What may be published
# ---------------------------------------------------------------------------------------------

# The allow-list: what a visitor needs, and nothing else. Pages, reports and downloads; the pages'
# styles, scripts, images and fonts (the font's licence and readme beside it, in FONT_DIR); the JSON
# files the pages link to; the marker. Binary types must start with their signature.
PAGE_TYPES = frozenset({"html", "csv", "css", "js", "svg"})
BINARY_TYPES = {
    "pdf": (b"%PDF-",),
    "xlsx": (b"PK\x03\x04",),
    "png": (b"\x89PNG\r\n\x1a\n",),
    "woff2": (b"wOF2",),
    "ttf": (b"\x00\x01\x00\x00", b"true"),
}
FONT_DIR = "assets/fonts"  # .txt here: the shipped font's licence and readme
PAGE_JSON = frozenset({"quality/results.json"})  # linked from the quality page
# Why a kind of file is not published (the build keeps its working files beside the site).
NOT_PUBLISHED = {
    "ipynb": "an executed notebook",
    "log": "a log file",
    "json": "a JSON file the pages do not use",
    "txt": "a text file (only the font's licence is published)",
    "tmp": "a temporary file",
}
# Data formats recognised by their first bytes, whatever the file is called.
MICRODATA_MAGIC = [
    (0, b"PAR1", "a Parquet file"),
    (8, b"DUCK", "a DuckDB database"),
    (0, b"SQLite format 3\x00", "an SQLite database"),
    (0, b"ARROW1", "an Arrow/Feather file"),
    (0, b"FEA1", "a Feather v1 file"),
    (0, b"\x93NUMPY", "a NumPy array"),
    (0, b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (0, b"ORC", "an ORC file"),
    (0, b"Obj\x01", "an Avro file"),
    (0, b"$FL2", "an SPSS file"),
    (0, b"$FL3", "an SPSS file"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"\x28\xb5\x2f\xfd", "a zstd archive"),
    (0, b"BZh", "a bzip2 archive"),
    (0, b"\xfd7zXZ\x00", "an xz archive"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
]
SNIFF_BYTES = 8192


def _sniff_data(head: bytes) -> str | None:
    """What data format these first bytes are (whatever the file is called), or None."""
    for offset, magic, what in MICRODATA_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return f"is {what}"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "is a Python pickle"
    return None


def _sniff(head: bytes, ext: str) -> str | None:
    """Why a file of an allowed type with these first bytes must not be published, or None."""
    data = _sniff_data(head)
    if data:
        return data
    if ext in BINARY_TYPES:
        if head and not head.startswith(BINARY_TYPES[ext]):
            return f"is not a .{ext} file (its first bytes do not match)"
        return None
    if b"\x00" in head:
        return f"is binary, not a .{ext} text file"
    if head.startswith(b"PK\x03\x04"):
        return "is a ZIP archive"
    return None


def _allowed(rel: str, ext: str) -> str | None:
    """Why the allow-list refuses the site file `rel` (posix, site-relative), or None."""
    parts = rel.split("/")
    if rel == MARKER:
        return None
    if any(part.startswith(".") for part in parts):
        return f"a hidden file{' (in a hidden folder)' if len(parts) > 1 and parts[-1][:1] != '.' else ''}"
    if ".tmp." in parts[-1] or ext == "tmp":
        return NOT_PUBLISHED["tmp"]
    if ext in PAGE_TYPES or ext in BINARY_TYPES:
        return None
    if ext == "json" and rel in PAGE_JSON:
        return None
    if ext == "txt" and "/".join(parts[:-1]) == FONT_DIR:
        return None
    if ext in NOT_PUBLISHED:
        return NOT_PUBLISHED[ext]
    return f"file type '.{ext}' is not one a visitor needs" if ext else "a file without an extension"


def scan_site(site: Path) -> list[str]:
    """Files that must not be published. The site may hold only what the allow-list names (pages,
    reports, downloads, their css/js/svg/png/fonts, the font's licence, the JSON the pages link to,
    the marker): a notebook, a log, a state or other JSON file, a dot file other than the marker,
    any other type is refused; so are data recognised by their first bytes (Parquet, DuckDB,
    SQLite, Arrow/Feather, pickle, ... under any name), a binary type whose first bytes do not
    match, binary content in a text type, a symbolic link or special file. Each finding names the
    file (site-relative)."""
    site = Path(site)
    findings = []
    for dirpath, dirnames, filenames in os.walk(site):
        base = Path(dirpath)
        for d in list(dirnames):
            if (base / d).is_symlink():
                findings.append(
                    f"{(base / d).relative_to(site).as_posix()}: a symbolic link; not published "
                    f"/ シンボリックリンクは公開できません"
                )
                dirnames.remove(d)
        for name in filenames:
            f = base / name
            rel = f.relative_to(site).as_posix()
            if f.is_symlink() or not f.is_file():
                findings.append(f"{rel}: a symbolic link or special file; not published / 公開できないファイルです")
                continue
            ext = name.rsplit(".", 1)[-1].lower() if "." in name.lstrip(".") else ""
            try:
                with open(f, "rb") as fh:
                    head = fh.read(SNIFF_BYTES)
            except OSError as exc:
                findings.append(f"{rel}: cannot be read ({exc.strerror})")
                continue
            data = _sniff_data(head)
            if data:
                findings.append(f"{rel}: {data}; not published / 公開できない形式のデータです")
                continue
            refused = _allowed(rel, ext)
            if refused:
                findings.append(
                    f"{rel}: {refused}; only what a visitor needs is published (the build keeps its "
                    f"working files in {PREFIX}{_site_name(site)}{SUFFIX_WORK}) / 公開対象外のファイルです"
                )
                continue
            why = _sniff(head, ext)
            if why:
                findings.append(f"{rel}: {why}; not published / 公開できない形式のデータです")
    return sorted(findings)


def _site_name(folder: Path) -> str:
    """The published name of a site folder (the staging folder ``.X.tsunagari-new`` -> ``X``)."""
    name = Path(folder).name
    if name.startswith(PREFIX) and name.endswith(SUFFIX_NEW):
        return name[len(PREFIX) : -len(SUFFIX_NEW)]
    return name


# ---------------------------------------------------------------------------------------------
# Build state
# ---------------------------------------------------------------------------------------------


class BuildState:
    """artefact key -> input hash of the site folder `site_dir` (the staging folder), persisted
    after every change (atomic write) in the working folder's ``state.json`` with the folder's id;
    a state of another site folder is not used. With each artefact the state keeps the sha256 of
    the files it wrote into the site: an artefact is up to date only when its input hash is the
    same and its files are still those bytes, so a published file changed by hand (or by anything
    but the build) is detected and built again. Before the first change (``invalidate`` comes
    before every artefact is written) the folder gets an id of its own: from then on it is no
    longer the copy of the published site that the state may also have described."""

    def __init__(self, work_dir: Path, site_dir: Path) -> None:
        import threading

        self._lock = threading.Lock()  # the build records from two threads (reports and site)
        self.work = Path(work_dir)
        self.path = self.work / STATE_FILE
        self.site_dir = Path(site_dir)
        self.site = site_id(self.site_dir)
        self._own_id = False
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            saved = {}
        ok = isinstance(saved, dict) and self.site is not None and saved.get("site") == self.site
        self.data: dict[str, str] = dict(saved.get("artefacts") or {}) if ok else {}
        files = saved.get("files") if ok else None
        # artefact key -> {site-relative path: sha256} of the files it wrote
        self.files: dict[str, dict[str, str]] = dict(files) if isinstance(files, dict) else {}

    def _diverge(self) -> None:
        """Give the site folder an id of its own before it is first changed (marker first, then
        the state: killed in between, the state describes the published site, which the folder
        still equals, and the next build starts from a fresh copy)."""
        if not self._own_id:
            self.site = _mark(self.site_dir, new_id=True)
            self._own_id = True
            self._save()

    def _rel(self, p: Path) -> str | None:
        """`p` relative to the site folder (posix), or None for a file outside it (e.g. the
        executed notebooks in the working folder)."""
        try:
            return Path(p).relative_to(self.site_dir).as_posix()
        except ValueError:
            return None

    def up_to_date(self, key: str, digest: str, outputs: Iterable[Path] = ()) -> bool:
        """Same input hash, every output present, and every file the artefact wrote into the site
        still the bytes it wrote."""
        if self.data.get(key) != digest or not all(Path(p).exists() for p in outputs):
            return False
        return not self.changed_files(key)

    def changed_files(self, key: str) -> list[Path]:
        """The files artefact `key` wrote into the site that are no longer the bytes it wrote. A
        file with the size and modification time recorded is taken as unchanged (the staging copy
        keeps both: shutil.copy2); the others are hashed (a file touched but not changed is not
        counted). Costs a stat per file on a rebuild with no change."""
        return [
            self.site_dir / rel
            for rel, rec in self.files.get(key, {}).items()
            if not _same_file(self.site_dir / rel, rec)
        ]

    def invalidate(self, key: str) -> None:
        """Before artefact `key` is (re)written."""
        with self._lock:
            self._diverge()
            dropped = self.data.pop(key, None) is not None
            if self.files.pop(key, None) is not None or dropped:
                self._save()

    def record(self, key: str, digest: str, outputs: Iterable[Path] = ()) -> None:
        """Artefact `key` is complete: its input hash, and the sha256 of the `outputs` it wrote
        into the site (files outside the site and missing files are not recorded)."""
        files = {}
        for p in outputs:
            rel = self._rel(Path(p))
            if rel is not None and Path(p).is_file():
                files[rel] = file_record(Path(p))
        with self._lock:
            self._diverge()
            self.data[key] = digest
            # A file another artefact wrote and this one rewrote (the site header added to the
            # quality page): its bytes now are the build's, for both.
            for theirs in self.files.values():
                for rel in theirs.keys() & files.keys():
                    theirs[rel] = files[rel]
            if files:
                self.files[key] = files
            else:
                self.files.pop(key, None)
            self._save()

    def save(self) -> None:
        with self._lock:
            self._save()

    def _save(self) -> None:
        _write_json(self.path, {"site": self.site, "artefacts": self.data, "files": self.files})


def file_record(path: Path) -> list:
    """[sha256, size, modification time in ns] of a file, as the build state records it."""
    st = os.stat(path)
    return [file_sha256(path), st.st_size, st.st_mtime_ns]


def _same_file(path: Path, rec: list | str) -> bool:
    """Whether `path` still holds the bytes recorded (``file_record``)."""
    if isinstance(rec, str):
        rec = [rec, None, None]
    try:
        st = os.stat(path)
    except OSError:
        return False
    if [st.st_size, st.st_mtime_ns] == list(rec[1:3]):
        return True
    return file_sha256(path) == rec[0]


def file_sha256(path: Path) -> str | None:
    """sha256 of a file's bytes (None when it cannot be read)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def digest(*parts: object) -> str:
    """A stable hash of strings, bytes, paths (their content) and JSON-able values."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            if part.is_dir():
                for f in sorted(p for p in part.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
                    h.update(str(f.relative_to(part)).encode())
                    h.update(f.read_bytes())
            elif part.exists():
                h.update(part.read_bytes())
            else:
                h.update(b"<missing>")
        elif isinstance(part, bytes):
            h.update(part)
        elif isinstance(part, str):
            h.update(part.encode())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()
