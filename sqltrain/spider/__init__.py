"""The Spider benchmark: loading, validation, schema model, hardness (the embedded mini benchmark
lives beside it, in sqltrain.minibench)."""
