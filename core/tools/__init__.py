"""The ``kvsourcing`` command and what it runs (a demo, a benchmark): tools apart from the
library, which never imports them. Store-specific commands come from the drivers."""
