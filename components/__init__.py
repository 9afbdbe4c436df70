"""Pulumi components for the gpu-platform migration, one component per module."""
