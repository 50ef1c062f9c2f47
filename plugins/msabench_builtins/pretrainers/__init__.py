"""Built-in pretrainer plugins (``dec``)."""
