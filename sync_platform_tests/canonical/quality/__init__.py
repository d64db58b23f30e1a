"""Tests of the quality gates of the canonical tables."""
