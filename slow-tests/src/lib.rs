//! No library: this package holds scratchnet's slow suites, in `tests/`.
