"""The archive index records which backend holds each archive, and under which key.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column(
        "archives",
        sa.Column("backend", sa.String(length=16), server_default="local", nullable=False),
    )
    op.add_column("archives", sa.Column("key", sa.Text(), nullable=True))
    # Every archive before this revision is a local file at ARCHIVE_DIR/<id[:2]>/<id>.json.gz.
    op.execute(
        "UPDATE archives SET key = substr(session_id, 1, 2) || '/' || session_id || '.json.gz'"
    )
    op.alter_column("archives", "key", nullable=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("archives", "key")
    op.drop_column("archives", "backend")
