"""Overhead benchmarks: no-op services and pipelines, and the script that measures them."""
