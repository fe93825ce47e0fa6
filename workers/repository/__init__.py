"""What a backup is in the store: its manifest, the manifest's MAC, and reading a
stored manifest that can be trusted."""
