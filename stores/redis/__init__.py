"""redis driver."""
