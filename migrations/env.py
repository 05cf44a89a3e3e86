"""alembic environment for halodb's own tables. Run from code (``halodb.migrate``), never by hand.

Only ``halodb_*`` tables are ever created, compared or altered here: Halo's tables are not ours.
"""

from alembic import context

from halodb.state.tables import VERSION_TABLE, metadata


def _ours(name, type_, parent_names) -> bool:
    # Reflect only halodb's tables, so autogenerate never proposes dropping one of Halo's.
    return type_ != "table" or (name or "").startswith("halodb_")


def _configure(**kwargs) -> None:
    context.configure(
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        include_name=_ours,
        compare_type=True,
        **kwargs,
    )


if context.is_offline_mode():
    _configure(url=context.config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = context.config.attributes["connection"]
    # Batch mode (move-and-copy) is only needed where ALTER is weak: SQLite.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
