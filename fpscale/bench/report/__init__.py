"""Reports of a results folder: Markdown, HTML and plots."""
