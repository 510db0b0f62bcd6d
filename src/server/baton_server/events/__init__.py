"""Live run events: published to Redis after each commit, fanned out to watchers.

PostgreSQL's ``run_events`` table is the record; Redis pub/sub only makes delivery fast.
Watchers check every event's sequence number and read any gap from PostgreSQL, so a lost
message (or a Redis restart) delays an event but never loses or duplicates one.
"""
