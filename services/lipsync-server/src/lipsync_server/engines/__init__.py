"""Engines turn a frame id and audio features into the face region of a lip-synced frame."""
