"""SeViLA toolkit core."""
