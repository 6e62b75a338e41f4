"""The Faust agents and the online learners they run."""
