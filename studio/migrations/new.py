"""`make migration m="..."`: autogenerate a migration against a fresh, fully migrated SQLite file."""

import sys
import tempfile
from pathlib import Path

from alembic import command

from studio.db import alembic_config, create_db_engine, migrate


def main(message: str) -> None:
    if not message:
        raise SystemExit('Say what changed: make migration m="add pins.content_type"')
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_db_engine(f"sqlite:///{Path(tmp) / 'schema.db'}")
        migrate(engine)
        command.revision(alembic_config(engine), message=message, autogenerate=True)
        engine.dispose()


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]))
