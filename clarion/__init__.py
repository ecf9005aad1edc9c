"""Clarion: a self-hosted notification engine that speaks Knock's v1 API."""

__version__ = "0.1.0"
