"""The four accepted image formats read as containers: their metadata taken out without
decoding a pixel (``strip``), their size and decoding cost read from their headers.

One module per format (``jpeg``, ``png``, ``gif``, ``webp``), each a careful walk of the
file's structure with every length checked against what is there; ``tiff`` reads the one
EXIF field kept (the orientation). ``images/metadata.py`` says what is kept.
"""
