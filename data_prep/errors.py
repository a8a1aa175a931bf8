"""The one error type data_prep raises for bad input; the CLI prints it and exits with status 2."""


class DataPrepError(ValueError):
    """Bad input or a refused operation; the message names the file/field and says the fix."""
