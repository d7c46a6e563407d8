"""The ``theorylab`` command line (thin: each command is one call into the library)."""
