"""Finding the dictionary for a vendor: a configured directory, the newest stored
version (``nfp dictionary load``), or the one nfp ships, in that order."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Optional

from sqlalchemy import func, select

from nfp.db.rules import StoredDictionary

from . import loader
from .errors import DictionaryError
from .loader import LoadedDictionary


class DictionaryCatalog:
    """Resolves vendor names to loaded dictionaries (parsing is cached by content)."""

    def __init__(self, session_factory: Optional[Callable] = None, directory: Optional[str] = None,
                 use_stored: bool = True, pinned_version: Optional[int] = None):
        self._sessions = session_factory
        self._directory = Path(directory) if directory else None
        self._use_stored = use_stored and session_factory is not None
        self._pinned = pinned_version

    def get(self, vendor: str) -> LoadedDictionary:
        """The dictionary serving ``vendor``."""
        path = self._file(vendor)
        if path is not None:
            return loader.load_file(path)
        if self._use_stored:
            stored = self.stored(vendor, self._pinned)
            if stored is not None:
                return stored
            if self._pinned is not None:
                raise DictionaryError.one(f"db:{vendor}", 1, "", f"no stored version {self._pinned} of {vendor}")
        return loader.load_shipped(vendor)

    def _file(self, vendor: str) -> Optional[Path]:
        """``<vendor>.yaml`` (or the seed's ``<vendor>-dictionary.yaml``) in the directory."""
        if self._directory is None:
            return None
        for name in (f"{vendor}.yaml", f"{vendor}-dictionary.yaml"):
            path = self._directory / name
            if path.is_file():
                return path
        return None

    def has(self, vendor: str) -> bool:
        """Whether a dictionary for ``vendor`` exists (file, stored or shipped); nothing is parsed."""
        if self._file(vendor) is not None:
            return True
        if self._use_stored:
            with self._sessions() as session:
                if session.scalar(select(StoredDictionary.version)
                                  .where(StoredDictionary.vendor == vendor).limit(1)) is not None:
                    return True
        return vendor in loader.shipped_names()

    def describe(self) -> str:
        """Where dictionaries are looked for, for error messages."""
        places = [f"<vendor>.yaml in {self._directory}" if self._directory else
                  "no dictionary directory (configurator.dictionary_dir)"]
        if self._use_stored:
            places.append("stored with `nfp dictionary load`")
        places.append(f"shipped ({', '.join(loader.shipped_names())})")
        return "; ".join(places)

    def stored(self, vendor: str, version: Optional[int] = None) -> Optional[LoadedDictionary]:
        """A stored version (default the newest), or None."""
        with self._sessions() as session:
            query = select(StoredDictionary).where(StoredDictionary.vendor == vendor)
            query = (query.where(StoredDictionary.version == version) if version is not None
                     else query.order_by(StoredDictionary.version.desc()).limit(1))
            row = session.scalars(query).first()
        if row is None:
            return None
        return loader.parse(row.content, f"db:{vendor}@v{row.version}")


def store(session_factory: Callable, loaded: LoadedDictionary, vendor: Optional[str] = None) -> tuple[int, bool]:
    """Store a validated dictionary as the vendor's next version.
    Return ``(version, created)``; an unchanged newest version is not stored again."""
    vendor = vendor or loaded.name
    digest = hashlib.sha256(loaded.text.encode()).hexdigest()
    with session_factory() as session, session.begin():
        newest = session.scalars(select(StoredDictionary).where(StoredDictionary.vendor == vendor)
                                 .order_by(StoredDictionary.version.desc()).limit(1)).first()
        if newest is not None and newest.sha256 == digest:
            return newest.version, False
        version = (session.scalar(select(func.max(StoredDictionary.version))
                                  .where(StoredDictionary.vendor == vendor)) or 0) + 1
        session.add(StoredDictionary(vendor=vendor, version=version, product=loaded.model.product,
                                     firmware_version=loaded.model.firmware_version, sha256=digest,
                                     content=loaded.text, source=loaded.source))
    return version, True
