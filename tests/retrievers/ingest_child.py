"""Run by the ingestion tests in a subprocess: ingestion that the parent kills, pauses or races.

    python ingest_child.py DATA_DIR STORE_DIR COLLECTION
        ingest a folder, printing "wrote N" after every store write (the parent SIGKILLs it part way)
    python ingest_child.py --big FILE STORE_DIR COLLECTION WINDOW
        ingest one big file in batches of 8 chunks, windows of WINDOW characters (killed mid-file)
    python ingest_child.py --hold COLLECTION
        hold the collection's writer lock in $PLAIT_HOME's store until a line arrives on stdin
    python ingest_child.py --pause-after-write DATA_DIR COLLECTION
        ingest into $PLAIT_HOME's store as `plait ingest` does, but after the first store write
        print "wrote" and wait for a line on stdin before committing (the parent edits a file meanwhile)
"""

from __future__ import annotations

import sys

from plait.retrievers.chroma import ChromaStore
from plait.retrievers.indexing import Indexer
from plait.retrievers.splitters import TokenSplitter


class LoudStore(ChromaStore):
    pause = False

    def upsert(self, documents, **kwargs):
        ids = super().upsert(documents, **kwargs)
        print(f"wrote {len(ids)}", flush=True)
        if self.pause:
            self.pause = False
            sys.stdin.readline()
        return ids


def small_splitter(store: ChromaStore) -> TokenSplitter:
    return TokenSplitter(store.embeddings, chunk_size=64, chunk_overlap=8)


def main() -> None:
    if sys.argv[1] == "--hold":
        from plait.defaults import default_store

        indexer = Indexer(default_store(sys.argv[2]), progress=False)
        with indexer.lock():
            print("locked", flush=True)
            sys.stdin.readline()
        return
    if sys.argv[1] == "--pause-after-write":
        from plait.defaults import chroma_dir

        data, collection = sys.argv[2:4]
        store = LoudStore(collection, path=chroma_dir())
        store.pause = True
        report = Indexer(store, progress=False).ingest(data)
        print(report.summary(), flush=True)
        return
    if sys.argv[1] == "--big":
        path, db, collection, window = sys.argv[2:6]
        store = LoudStore(collection, path=db)
        splitter = small_splitter(store)
        splitter.window = int(window)
        Indexer(store, splitter=splitter, batch_chunks=8, progress=False).ingest(path)
        print("done", flush=True)
        return
    data, path, collection = sys.argv[1:4]
    store = LoudStore(collection, path=path)
    indexer = Indexer(store, splitter=small_splitter(store), batch_chunks=8, progress=False)
    print("ready", flush=True)
    report = indexer.ingest(data)
    print("done", report.chunks_written, flush=True)


if __name__ == "__main__":
    main()
