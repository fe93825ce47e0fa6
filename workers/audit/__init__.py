"""The user-event audit trail: the line format, catalog access, shipping, purging, export."""
