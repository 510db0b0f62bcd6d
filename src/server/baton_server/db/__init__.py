"""PostgreSQL access: schema, engine, migrations. PostgreSQL is Baton's source of truth."""
