"""The Spider benchmark: loading, validation, schema model, hardness, mini benchmark."""
