"""Storage: the database (SQLAlchemy + Alembic) and the raw file archive, behind one Store."""

from hub.storage.repository import FileRecord, SaveResult, Store, StoredActivity, VersionRecord

__all__ = ["FileRecord", "SaveResult", "Store", "StoredActivity", "VersionRecord"]
