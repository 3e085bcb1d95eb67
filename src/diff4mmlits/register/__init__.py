"""Paper step 1: liver-focused registration of every phase onto the annotated phase (PVP).

``register_case(case, config)`` is the pure entry point; ``stage.py`` reads and writes the run folder.
"""

from diff4mmlits.register.case import RegisteredCase, register_case

__all__ = ["RegisteredCase", "register_case"]
