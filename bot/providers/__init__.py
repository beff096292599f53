"""Seedream providers behind one interface (see ``base``)."""
