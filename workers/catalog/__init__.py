"""The SQL catalog: what was backed up and restored, when, and how it went."""
