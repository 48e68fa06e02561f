"""Social: people as others see them: the directory (AS2 over REST), following, the inbox."""
