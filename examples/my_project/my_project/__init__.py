"""An example of your own code trained by stoker: a tabular classifier on a CSV file."""
