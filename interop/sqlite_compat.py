#!/usr/bin/env python3
"""SQLite state files shared with the reference's SQLiteSnapshotStore.

Usage:
  python sqlite_compat.py write DB     # the reference writes snapshots task_ref v1..v2
  python sqlite_compat.py read DB      # the reference reads task_rs (written by us) and
                                       # prints each snapshot's model_dump_json, one per line
"""

import contextlib
import io
import json
import logging
import sys
import warnings
from datetime import datetime, timezone

warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    from asap.models.entities import StateSnapshot
    from asap.state.stores.sqlite import SQLiteSnapshotStore


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "read"):
        sys.exit(__doc__)
    store = SQLiteSnapshotStore(sys.argv[2])
    if sys.argv[1] == "write":
        for version in (1, 2):
            store.save(StateSnapshot(
                id=f"snap_ref_{version}", task_id="task_ref", version=version,
                data={"step": version, "note": "h\u00e9llo \u2713", "big": 12345678901234567890, "f": 0.1},
                checkpoint=version == 2,
                created_at=datetime(2026, 1, 15, 10, 30, version, 250000, tzinfo=timezone.utc),
            ))
        print("wrote task_ref v1, v2")
    else:
        for version in store.list_versions("task_rs"):
            print(store.get("task_rs", version).model_dump_json())


if __name__ == "__main__":
    main()
