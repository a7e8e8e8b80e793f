"""The one exception type the command-line tools turn into a one-line message."""


class AnoganError(Exception):
  """A problem the user can fix; the message names the problem and the fix."""
