"""The tweeter: the seed's sixth subscriber, a short public post for every upload."""
