"""Placeholder replaced below."""
import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args) -> int:
    return 0
