"""What lipsync-server and lipsync-proxy share, so that both log and trace by the same rules."""
