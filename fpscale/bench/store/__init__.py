"""The results folder: atomic files, the manifest, the typed summary."""
