"""tune stage: hyperparameter search with Ray Tune (Tuner -> driver function -> TorchTrainer).

`sqltrain.tune.search` parses and checks the search space without Ray; `sqltrain.tune.tuner`
runs the search (it imports Ray).
"""
