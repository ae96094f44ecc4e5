"""zhuge."""
