"""Database: SQLAlchemy 2 models, engine factory and repositories."""
from __future__ import annotations

import importlib

#: every module that defines tables on ``nfp.db.base.Base``
MODEL_MODULES = [
    "nfp.db.models",
    "nfp.db.rules",
    "nfp.db.leases",
    "nfp.configurator.tables",
    "nfp.audit",
]


def all_models():
    """Import every model module and return the shared metadata."""
    for name in MODEL_MODULES:
        importlib.import_module(name)
    from nfp.db.base import Base
    return Base.metadata
