"""Images: what is accepted (checks, containers, metadata), how it comes in (intake, the
decoding budget), where it is kept (store), and the REST resources and gallery pages."""
