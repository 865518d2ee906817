"""Signature verification and signing of images."""
