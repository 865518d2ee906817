"""The one error type of the images package."""


class ImageError(Exception):
    """An image that cannot be read or does not verify; the message names the file and the
    expectation, ready to be shown to a person as one line."""
