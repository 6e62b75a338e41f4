"""NovaCron Stream: the Faust app, settings, topics, tables, features, broker and CLI."""
