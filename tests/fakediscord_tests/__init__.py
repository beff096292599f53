"""Tests of the fake Discord itself."""
