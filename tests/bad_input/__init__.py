"""Malformed user files through every command that reads them.

The commands: check, prepare, predict, evaluate, train and export.
"""
