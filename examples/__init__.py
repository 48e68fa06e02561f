"""Short programs that take part in Dovecote from outside its runtime."""
