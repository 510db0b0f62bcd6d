"""The executor: workers that take runs from Redis and drive them to completion.

PostgreSQL is the source of truth; every transition is a compare-and-set written by the
:class:`~baton_server.executor.journal.Journal` (group commit). Redis only dispatches.
"""
