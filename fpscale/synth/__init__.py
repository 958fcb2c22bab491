"""Synthetic IDENT-style population: master fingers, impressions, feature vectors.

Everything generated is a pure function of (seed, identity, finger, encounter),
so any chunk of a gallery or submission stream can be produced anywhere, in any
order, and comes out bit-identical. ``synth`` imports neither ``matcher`` nor
``bench``.
"""
