"""The builder: the seed's fake CI build, with live progress on the bus."""
