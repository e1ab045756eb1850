"""Issue #11: one test file per area of the security review."""
