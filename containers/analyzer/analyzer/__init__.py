"""The analyzer: live stream → faces → emotions."""
