"""`make bench`: Dovecote's figures, measured side by side in one run."""
