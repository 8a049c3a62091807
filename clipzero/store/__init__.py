"""Embedding stores: each image encoded once, searched by text or image.

* :mod:`.store`: :class:`EmbeddingStore`, SQLite as the source of truth plus a FAISS index, keyed by content;
* :mod:`.index_kinds`: the FAISS index kinds a store can use (flat, HNSW, IVF) as data;
* :mod:`.sharded`: IVF indexes built from embedding shards and merged on disk, searched memory-mapped.

Open one with its model through :func:`clipzero.open_store` (the factory decides the model and its settings).
"""

from .records import AddReport, Record, SearchHit, StoredImage, canonical_path
from .store import EmbeddingStore

__all__ = ["AddReport", "EmbeddingStore", "Record", "SearchHit", "StoredImage", "canonical_path"]
