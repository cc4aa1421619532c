"""Benchmarks of advcalib; the measurement code is ``advcalib.bench`` (also ``advcalib bench``)."""
