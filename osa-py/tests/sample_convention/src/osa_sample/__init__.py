"""Test fixture convention package for osa-py."""
