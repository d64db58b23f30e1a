"""Tests of the canonical mapping layer: model, mapping files, engine, normalizers, identity."""
