"""People as others see them: the directory (AS2 over REST), following, and the inbox."""
