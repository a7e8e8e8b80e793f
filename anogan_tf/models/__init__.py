"""Model families: one module each, the same interface (see base.py), registered here."""
