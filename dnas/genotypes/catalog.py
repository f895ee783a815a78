"""Published genotypes shipped as JSON data (``dnas/genotypes/published/<NAME>.json``), loaded by name."""

from __future__ import annotations

import os
from pathlib import Path

from dnas.genotypes.core import Genotype
from dnas.genotypes.spec import GenotypeError
from dnas.safe_read import shown_path
from dnas.storage import is_url

PUBLISHED_DIR = Path(__file__).parent / "published"


def published() -> list[str]:
    """Names of the shipped genotypes."""
    return sorted(p.stem for p in PUBLISHED_DIR.glob("*.json"))


def load(name_or_path: str | Path) -> Genotype:
    """Load a shipped genotype by name (case-insensitive, e.g. ``"DARTS_V2"``), a JSON file by path or fsspec URL."""
    text = str(name_or_path)
    if is_url(text):
        return Genotype.from_file(text)
    path = Path(text)
    # os.path.lexists never raises (a name too long, a symlink loop) and sees broken links: read_user_file reports them
    if path.suffix == ".json" or os.path.lexists(text) or "/" in text or "\\" in text:
        return Genotype.from_file(path)
    by_upper = {n.upper(): n for n in published()}
    key = by_upper.get(text.upper())
    if key is None:
        raise GenotypeError(
            f"no published genotype named {shown_path(text)} and no such file; published: {published()}"
        )
    return Genotype.from_file(PUBLISHED_DIR / f"{key}.json")
