"""Run by test_indexing in a subprocess: ingest a folder, printing a line after every store write.

The parent kills this process (SIGKILL) part way and checks that a re-run repairs everything.
Usage: python ingest_child.py DATA_DIR STORE_DIR COLLECTION
"""

from __future__ import annotations

import sys

from plait.retrievers.chroma import ChromaStore
from plait.retrievers.indexing import Indexer
from plait.retrievers.splitters import TokenSplitter


class LoudStore(ChromaStore):
    def upsert(self, documents, **kwargs):
        ids = super().upsert(documents, **kwargs)
        print(f"wrote {len(ids)}", flush=True)
        return ids


def main() -> None:
    data, path, collection = sys.argv[1:4]
    store = LoudStore(collection, path=path)
    indexer = Indexer(store, splitter=TokenSplitter(store.embeddings, chunk_size=64, chunk_overlap=8),
                      batch_chunks=8, progress=False)
    print("ready", flush=True)
    report = indexer.ingest(data)
    print("done", report.chunks_written, flush=True)


if __name__ == "__main__":
    main()
