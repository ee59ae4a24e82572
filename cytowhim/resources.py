"""Where the bundled data (reference intervals, default strategies, example files) lives."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def data_dir() -> Path:
    """The bundled ``data/`` folder: inside the installed package, or at the checkout's top."""
    for candidate in (_HERE / "data", _HERE.parent / "data"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"cytowhim's bundled data folder is missing (looked in {_HERE / 'data'} "
        f"and {_HERE.parent / 'data'}); reinstall cytowhim"
    )


def data_path(*parts: str) -> Path:
    """A file in the bundled data folder; FileNotFoundError naming it if absent."""
    path = data_dir().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"bundled data file {path} is missing; reinstall cytowhim")
    return path


def example_files() -> list[Path]:
    """The bundled example FCS files."""
    return sorted(data_dir().joinpath("examples").glob("*.fcs"))
