"""Reports and analyses computed from run directories (never from logs)."""
