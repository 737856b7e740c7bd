"""The one exception type of the data package: a user's input problem, in one line."""


class DataError(ValueError):
  """A dataset cannot be read as given; the message names the file and the fix."""
