"""The one exception type seglib raises for bad input: a ValueError whose message names the file or id."""


class SeglibError(ValueError):
    """Bad input: the message names the file or id and says what was received."""
