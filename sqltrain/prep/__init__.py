"""prep stage."""
