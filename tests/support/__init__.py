"""Helpers shared by the test suite: real processes and sockets, never mocks."""
