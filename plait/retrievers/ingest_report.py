"""What an ingestion run did: counts, and every file (or part of one) left out with the reason."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Skipped:
    """A file (or part of one, ``path:line``) left out of ingestion and why."""

    path: str
    reason: str


@dataclass
class IngestReport:
    """What an ingestion run did."""

    files_added: int = 0
    files_updated: int = 0
    files_unchanged: int = 0
    files_deleted: int = 0
    chunks_written: int = 0
    chunks_reused: int = 0
    chunks_deleted: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    parts_skipped: list[Skipped] = field(default_factory=list)
    files_resumed: int = 0
    seconds: float = 0.0

    @property
    def files_seen(self) -> int:
        return self.files_added + self.files_updated + self.files_unchanged + len(self.skipped)

    def summary(self) -> str:
        resumed = f" ({self.files_resumed} resumed)" if self.files_resumed else ""
        lines = [f"{self.files_seen} files: {self.files_added} added, {self.files_updated} updated{resumed}, "
                 f"{self.files_unchanged} unchanged, {self.files_deleted} deleted, {len(self.skipped)} skipped; "
                 f"{self.chunks_written} chunks written, {self.chunks_reused} reused, "
                 f"{self.chunks_deleted} deleted in {self.seconds:.1f}s"]
        lines += [f"  skipped {s.path}: {s.reason}" for s in self.skipped]
        lines += [f"  skipped part of {s.path}: {s.reason}" for s in self.parts_skipped]
        return "\n".join(lines)
