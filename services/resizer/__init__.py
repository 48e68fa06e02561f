"""The resizer: thumbnails of every uploaded image, stored back through the gateway."""
