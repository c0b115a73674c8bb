"""Test helpers shared by the integration suite."""
