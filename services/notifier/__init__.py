"""The notifier: one notification per follower, on that person's own topic."""
